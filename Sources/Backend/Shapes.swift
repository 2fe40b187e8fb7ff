// Sizes and settings of the ops in `Backend`. Dimension letters: B batch, T sequence,
// C channels, NH heads, HS head size, R LoRA rank.

/// Row-major C = alpha·op(A)·op(B) + beta·C, optionally over `batch` matrices at fixed strides.
/// op(A) is [m,k], op(B) is [k,n], C is [m,n]. Leading dimensions default to packed storage.
public struct Gemm: Sendable {
    public var m, n, k: Int
    public var transA, transB: Bool
    public var alpha, beta: Float
    public var lda, ldb, ldc: Int
    public var batch, strideA, strideB, strideC: Int

    public init(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0,
                lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil,
                batch: Int = 1, strideA: Int? = nil, strideB: Int? = nil, strideC: Int? = nil) {
        self.m = m; self.n = n; self.k = k
        self.transA = transA; self.transB = transB
        self.alpha = alpha; self.beta = beta
        self.lda = lda ?? (transA ? m : k)
        self.ldb = ldb ?? (transB ? k : n)
        self.ldc = ldc ?? n
        self.batch = batch
        self.strideA = strideA ?? m * k
        self.strideB = strideB ?? k * n
        self.strideC = strideC ?? m * n
    }

    /// Elements op(A)/op(B)/C span in memory (for bounds checks).
    public var spanA: Int { (batch - 1) * strideA + (transA ? (k - 1) * lda + m : (m - 1) * lda + k) }
    public var spanB: Int { (batch - 1) * strideB + (transB ? (n - 1) * ldb + k : (k - 1) * ldb + n) }
    public var spanC: Int { (batch - 1) * strideC + (m - 1) * ldc + n }
}

/// Word + position (+ token type) embedding of BT tokens into C channels.
public struct EmbeddingShape: Sendable, Equatable {
    public var tokens: Int          // BT
    public var channels: Int        // C
    public var vocabulary: Int      // rows of the word table
    public var positions: Int       // rows of the position table
    public var tokenTypes: Int      // rows of the token-type table (0 when there is none)
    public var wordPadding: Int     // backward: this word row gets no gradient (padding_idx; −1: none)
    public var positionPadding: Int // backward: this position row gets no gradient (−1: none)
    public init(tokens: Int, channels: Int, vocabulary: Int, positions: Int, tokenTypes: Int = 0, wordPadding: Int = -1, positionPadding: Int = -1) {
        self.tokens = tokens; self.channels = channels; self.vocabulary = vocabulary
        self.positions = positions; self.tokenTypes = tokenTypes
        self.wordPadding = wordPadding; self.positionPadding = positionPadding
    }
}

extension EmbeddingShape {
    /// The same lookup over `count` tokens.
    public func tokens(_ count: Int) -> EmbeddingShape {
        var s = self
        s.tokens = count
        return s
    }
}

/// Multi-head attention: queries [B,T,NH·HS], keys and values [B,T,NKV·HS] — NKV = NH (the
/// default) is multi-head attention, a divisor of NH grouped-query attention (query head h reads
/// key/value head h/(NH/NKV); nothing is copied). `causal`: query i sees keys j ≤ i only. `scale`
/// defaults to 1/√HS. `dropout` drops attention probabilities (training) with masks from `seed`;
/// backward needs the same values.
public struct AttentionShape: Sendable {
    public var batch, length, heads, headSize: Int   // B, T, NH, HS
    public var keyValueHeads: Int                    // NKV
    public var causal: Bool
    public var scale: Float
    public var dropout: Float = 0
    public var seed: UInt64 = 0
    public init(batch: Int, length: Int, heads: Int, headSize: Int, keyValueHeads: Int? = nil, causal: Bool = false,
                scale: Float? = nil, dropout: Float = 0, seed: UInt64 = 0) {
        self.batch = batch; self.length = length; self.heads = heads; self.headSize = headSize
        self.keyValueHeads = keyValueHeads ?? heads; self.causal = causal
        self.scale = scale ?? 1 / Float(headSize).squareRoot()
        self.dropout = dropout; self.seed = seed
    }
    public var channels: Int { heads * headSize }
    /// Channels of k and v: NKV·HS.
    public var keyValueChannels: Int { keyValueHeads * headSize }
    /// Query heads per key/value head.
    public var group: Int { heads / keyValueHeads }
    /// Elements of q, out: B·T·C.
    public var activations: Int { batch * length * channels }
    /// Elements of k, v: B·T·NKV·HS.
    public var keyValueActivations: Int { batch * length * keyValueChannels }
    /// Elements of one [B,NH,T,T] score tensor.
    public var scores: Int { batch * heads * length * length }
    /// Elements of lse: B·NH·T.
    public var rows: Int { batch * heads * length }
}

/// TinyBERT's attention-score distillation target: another model's pre-softmax scores for the same
/// batch, mask and heads — scale·q·kᵀ + bias, 0 at masked keys — recomputed tile by tile inside
/// the attention kernels from its q, k [B,T,NH·headSize] and bias [NH,T,T], so that no [B,NH,T,T]
/// tensor exists on either side. `scale` defaults to 1/√headSize.
public struct ScoreTarget {
    public var q, k: Tensor
    public var bias: Tensor?
    public var headSize: Int
    public var scale: Float
    public init(q: Tensor, k: Tensor, bias: Tensor?, headSize: Int, scale: Float? = nil) {
        self.q = q; self.k = k; self.bias = bias; self.headSize = headSize
        self.scale = scale ?? 1 / Float(headSize).squareRoot()
    }
}

/// A gradient arriving at an attention's pre-softmax scores (masked keys get none).
public enum ScoreGradient {
    /// [B,NH,T,T] (the unfused path: a loss computed on stored scores).
    case dense(Tensor)
    /// The gradient of gradScale·attentionScoreLoss(…, target): gradScale·2/(B·NH·T·T)·(S − S_target),
    /// computed tile by tile.
    case scoreMSE(ScoreTarget, gradScale: Float)
}

/// The low-rank branch y += scale·(dropout(x)·Aᵀ)·Bᵀ of a linear layer, PEFT semantics.
public struct LoRAShape: Sendable {
    public var rows, inFeatures, outFeatures, rank: Int   // N, In, Out, R
    public var scale: Float                               // alpha / r (or alpha / √r with rsLoRA)
    public var dropout: Float
    public var seed: UInt64                               // dropout mask seed; change it every step
    public init(rows: Int, inFeatures: Int, outFeatures: Int, rank: Int, scale: Float, dropout: Float = 0, seed: UInt64 = 0) {
        self.rows = rows; self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.rank = rank
        self.scale = scale; self.dropout = dropout; self.seed = seed
    }
}

/// AdamW hyper-parameters (torch.optim.AdamW semantics; no weight decay: pass 0 for that group).
/// Doubles, as torch's Python scalars: derived coefficients (1 − β2, …) are rounded to float once.
public struct AdamW: Sendable {
    public var learningRate, beta1, beta2, eps, weightDecay: Double
    public init(learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

// Operand checks, made once above the seam (Ops.swift): sizes are the caller's promise, so a
// mismatch is a bug and stops with a precondition naming the operand.
extension EmbeddingShape {
    /// The tables may be nil in backward (a frozen table gets no gradient).
    func check(out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?, word: Tensor?, position: Tensor?, type: Tensor?) {
        precondition(out.count == tokens * channels && ids.count == tokens && positions.count == tokens
                     && (types == nil || types!.count == tokens), "embedding: out is not BT·C or ids, positions, types not BT")
        precondition((word?.count ?? vocabulary * channels) == vocabulary * channels
                     && (position?.count ?? self.positions * channels) == self.positions * channels
                     && (type == nil || type!.count == tokenTypes * channels), "embedding: a table is not rows·C")
        precondition(ids.dtype == .i32 && positions.dtype == .i32 && (types == nil || types!.dtype == .i32), "embedding ids must be int32")
        precondition([out, word, position, type].allSatisfy { $0 == nil || $0!.dtype == .f32 }, "embedding tables and output must be f32")
    }
}

extension AttentionShape {
    /// `activations`: query-sized tensors (q, out, dq, dOut); `keyValues`: k, v, dk, dv.
    func check(_ activations: [Tensor], keyValues: [Tensor] = [], lse: Tensor?, scores: Tensor?, mask: Tensor?, bias: Tensor?) {
        precondition(keyValueHeads > 0 && heads % keyValueHeads == 0, "attention: \(heads) heads are not a multiple of \(keyValueHeads) key/value heads")
        for t in activations { precondition(t.count == self.activations && t.dtype == .f32, "attention tensor is not f32 B·T·C") }
        for t in keyValues {
            precondition(t.count == keyValueActivations && t.dtype == .f32, "attention key/value tensor is not f32 B·T·NKV·HS")
        }
        precondition(lse == nil || (lse!.count == rows && lse!.dtype == .f32), "lse is not B·NH·T")
        precondition(scores == nil || (scores!.count == self.scores && scores!.dtype == .f32), "scores are not B·NH·T·T")
        precondition(mask == nil || (mask!.count == batch * length && mask!.dtype == .i32), "mask is not int32 B·T")
        precondition(bias == nil || (bias!.count == heads * length * length && bias!.dtype == .f32), "bias is not NH·T·T")
        precondition(dropout >= 0 && dropout < 1, "attention dropout must be in [0, 1)")
    }

    func check(_ target: ScoreTarget) {
        let count = batch * length * heads * target.headSize
        precondition(target.q.count == count && target.k.count == count, "score target q, k are not B·T·NH·HS")
        precondition(target.bias == nil || target.bias!.count == heads * length * length, "score target bias is not NH·T·T")
    }

    func check(_ gradient: ScoreGradient?) {
        switch gradient {
        case .dense(let t): precondition(t.count == scores, "dScores are not B·NH·T·T")
        case .scoreMSE(let target, _): check(target)
        case nil: break
        }
    }

    /// The gradient factor of gradScale·(mean of squares over B·NH·T·T).
    public func scoreMSEWeight(gradScale: Float) -> Float { scores > 0 ? 2 * gradScale / Float(scores) : 0 }
}

extension LoRAShape {
    func check(x: Tensor, y: Tensor, xa: Tensor, a: Tensor, b: Tensor) {
        precondition(x.count == rows * inFeatures && y.count == rows * outFeatures && xa.count == rows * rank,
                     "LoRA: x, y or xa is not N·In, N·Out, N·R")
        precondition(a.count == rank * inFeatures && b.count == outFeatures * rank, "LoRA: A is not R·In or B not Out·R")
        precondition([x, y, xa, a, b].allSatisfy { $0.dtype == .f32 }, "LoRA needs f32 tensors")
        precondition(dropout >= 0 && dropout < 1, "LoRA dropout must be in [0, 1)")
    }
}

/// Rotary position embedding of `tokens` rows of `heads` heads of `headSize` (even) values each.
public struct RoPEShape: Sendable {
    public var tokens, heads, headSize: Int   // BT, NH (NKV for keys), HS
    public init(tokens: Int, heads: Int, headSize: Int) { self.tokens = tokens; self.heads = heads; self.headSize = headSize }
    public var count: Int { tokens * heads * headSize }
}

/// Decoding: one query per sequence (B of them, NH heads of HS) against a KV cache
/// [B, Tmax, NKV·HS] (position-major, so a prefill's k and v rows copy in unchanged); NH a
/// multiple of NKV (grouped-query attention), HS ≤ 256.
public struct DecodeShape: Sendable {
    public var batch, heads, keyValueHeads, headSize, capacity: Int   // B, NH, NKV, HS, Tmax
    /// The greatest of the lengths (≤ capacity; default the capacity): positions past it are read
    /// by no sequence, so a backend that splits the cache into chunks splits only this much.
    public var longest: Int
    public var scale: Float
    public init(batch: Int, heads: Int, keyValueHeads: Int, headSize: Int, capacity: Int, longest: Int? = nil, scale: Float? = nil) {
        self.batch = batch; self.heads = heads; self.keyValueHeads = keyValueHeads; self.headSize = headSize; self.capacity = capacity
        self.longest = longest ?? capacity
        self.scale = scale ?? 1 / Float(headSize).squareRoot()
    }
    public var queries: Int { batch * heads * headSize }
    public var cache: Int { batch * keyValueHeads * capacity * headSize }
}
