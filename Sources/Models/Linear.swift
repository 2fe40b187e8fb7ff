// The shared building blocks of every model family: a dense layer with its optional LoRA
// branch (here) and the norms (Norms.swift). Each holds typed views of its parameters (made
// once, when the model is built or its adapters change) and knows its own forward and backward.
//   Linear: y[N, Out] = x[N, In]·Wᵀ + b (W [Out, In], HF's nn.Linear), + scale·(drop(x)·Aᵀ)·Bᵀ
//           with an adapter (A [R, In], B [Out, R], PEFT semantics).
import Backend

public struct Linear {
    public let weight: Parameter         // [Out, In]
    public let bias: Parameter?          // [Out]
    public let inFeatures, outFeatures: Int
    /// The adapter on this layer (nil: none, or merged into the weight).
    public var lora: LoRABranch?
    /// A quantized model's int8 weight, where the backend has int8 kernels (inference only;
    /// `weight` then holds its dequantized values, which backends without them multiply).
    public var int8: Int8Weight?
    /// An inference model's weight packed once for the backend's products (PackedWeight; the
    /// decoders' packForInference), used for every forward that does not train.
    public var packed: PackedWeight?

    public init(weight: Parameter, bias: Parameter?, inFeatures: Int, outFeatures: Int, lora: LoRABranch? = nil) {
        self.weight = weight; self.bias = bias; self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.lora = lora
    }

    /// Its weight and bias, in layout order (not the adapter's).
    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// Its adapter's A and B (none without one).
    public var adapterParameters: [Parameter] { lora.map { [$0.a, $0.b] } ?? [] }

    /// y = x·Wᵀ + b over `rows` rows of x, `inputStride` elements apart (default In), then the
    /// adapter's branch, which saves x·Aᵀ in `saved` (an [N, R] arena buffer).
    public func forward(_ b: Backend, _ y: Tensor, _ x: Tensor, rows: Int, inputStride: Int? = nil, saved: Tensor? = nil,
                        training: Bool = false, seed: UInt64 = 0) {
        // Weight-only int8 up to the backend's rows (decoding streams 4× fewer bytes; the CPU's
        // kernel takes a prompt's rows too); past them the dequantized fp32 weight.
        if let int8, int8.kind == .dynamic || rows <= b.weightOnlyInt8Rows {
            precondition(lora == nil && !training, "\(weight.name): an int8 layer is for inference, without adapters")
            b.int8Linear(y, x, weight: int8, bias: bias?.weight, rows: rows, inputStride: inputStride)
            return
        }
        if let packed, !training, lora == nil {
            b.matmul(y, x, packed, bias: bias?.weight, rows: rows, inputStride: inputStride)
            return
        }
        b.matmul(y, x, weight.weight, bias: bias?.weight,
                 Gemm(m: rows, n: outFeatures, k: inFeatures, transB: true, lda: inputStride))
        if let lora {
            guard let saved else { preconditionFailure("\(weight.name): a LoRA branch needs its saved-input buffer") }
            b.loraForward(y, xa: saved, x, a: lora.a.weight, b: lora.b.weight, lora.shape(self, rows: rows, training: training, seed: seed))
        }
    }

    /// dW += dYᵀ·x and db += Σ dY when they train (db not with `biasGradient` false: the caller
    /// sums dY once for two biases, as an LSTM's b_ih and b_hh); dX = beta·dX + dY·W (rows `dXStride` apart,
    /// default In) when dX is given; the adapter's gradients, and its part of dX.
    public func backward(_ b: Backend, dX: Tensor?, dY: Tensor, x: Tensor, rows: Int, beta: Float = 0, inputStride: Int? = nil,
                         dXStride: Int? = nil, saved: Tensor? = nil, training: Bool = false, seed: UInt64 = 0,
                         biasGradient: Bool = true) {
        if weight.trains {
            b.matmul(weight.gradient, dY, x, bias: nil,
                     Gemm(m: outFeatures, n: inFeatures, k: rows, transA: true, beta: 1, ldb: inputStride))
        }
        if biasGradient, let bias, bias.trains { b.biasBackward(bias.gradient, dOut: dY, rows: rows, channels: outFeatures) }
        guard let dX else { return }
        inputGradient(b, dX: dX, dY: dY, rows: rows, beta: beta, dXStride: dXStride)
        if let lora {
            guard let saved else { preconditionFailure("\(weight.name): a LoRA branch needs its saved-input buffer") }
            b.loraBackward(dx: dX, dA: lora.a.gradient, dB: lora.b.gradient, dY: dY, x, xa: saved, a: lora.a.weight, b: lora.b.weight,
                           lora.shape(self, rows: rows, training: training, seed: seed))
        }
    }

    /// dX [rows, In] = dY·W (+ beta·dX), rows dXStride apart: the weight's part of backward alone.
    public func inputGradient(_ b: Backend, dX: Tensor, dY: Tensor, rows: Int, beta: Float = 0, dXStride: Int? = nil) {
        b.matmul(dX, dY, weight.weight, bias: nil, Gemm(m: rows, n: inFeatures, k: outFeatures, beta: beta, ldc: dXStride))
    }
}

/// A low-rank adapter on one Linear: its A and B, and where it sits in the model.
public struct LoRABranch {
    public let a: Parameter              // [R, In]
    public let b: Parameter              // [Out, R]
    public let rank: Int
    public let scale: Float              // alpha / r (alpha / √r with rsLoRA)
    public let dropout: Float            // on the branch's input, in training
    /// The adapter's place in the model (layer and module): the stream its dropout masks come
    /// from, and the arena slot that saves its x·Aᵀ.
    public let site: UInt64
    public let slot: Int

    func shape(_ linear: Linear, rows: Int, training: Bool, seed: UInt64) -> LoRAShape {
        LoRAShape(rows: rows, inFeatures: linear.inFeatures, outFeatures: linear.outFeatures, rank: rank, scale: scale,
                  dropout: training ? dropout : 0, seed: seed &* 0x9E37_79B9 &+ site)
    }
}

/// An arena's saved x·Aᵀ [rows, rank] of each adapter, by its slot, allocated at its first use.
final class LoRAInputs {
    private var buffers: [Tensor?] = []

    func input(_ branch: LoRABranch?, rows: Int, maxRows: Int, backend: Backend) -> Tensor? {
        guard let branch else { return nil }
        if buffers.count <= branch.slot { buffers += Array(repeating: nil, count: branch.slot + 1 - buffers.count) }
        let needed = maxRows * branch.rank
        if buffers[branch.slot] == nil || buffers[branch.slot]!.count < needed {
            do { buffers[branch.slot] = try backend.zeros(needed) } catch { fatalError("retort: the LoRA input buffer: \(error)") }
        }
        return buffers[branch.slot]!.slice(0, rows * branch.rank)
    }
}
