// Every CUDA kernel Retort launches, with the parameter list of its `__global__` signature in
// Sources/Kernels/cuda. CUDABackend launches only through these entries, and `launch` checks
// each call's arguments against them (count, order, kind, and a tensor's dtype against the
// pointer's element type), so a wrong argument list stops at the call with the kernel's name
// instead of corrupting memory on the device. Tests/BackendTests/KernelTableTests parses the
// .cu sources and checks that this table matches every signature exactly, both ways.

struct CUDAKernel: Hashable, Sendable, CustomStringConvertible {
    /// A kernel parameter: pointers by element type (doubles: reduction partials kept in an f32
    /// scratch tensor twice as long; halves: bf16/fp16 bits as unsigned short), then scalars.
    enum Parameter: String, Sendable, CaseIterable {
        case floats = "float *", ints = "int *", doubles = "double *", halves = "unsigned short *"
        case int32 = "int", int64 = "long long", float = "float", uint64 = "unsigned long long"

        var isPointer: Bool { rawValue.hasSuffix("*") }
    }

    let file: String
    let name: String
    let parameters: [Parameter]

    init(_ file: String, _ name: String, _ parameters: [Parameter]) {
        self.file = file; self.name = name; self.parameters = parameters
    }

    var description: String { "\(name) (\(file))" }
}

enum CUDAKernelTable {
    // adamw.cu
    static let adamwStep = CUDAKernel("adamw.cu", "adamw_step", [.floats, .floats, .floats, .floats, .int64, .float, .float,
        .float, .float, .float, .float, .float, .float, .float])
    // attention.cu
    // … mask, bias, B, T, NH, NKV, HS, causal, scale, dropout, seed
    static let attentionShape: [CUDAKernel.Parameter] = [.ints, .floats, .int32, .int32, .int32, .int32, .int32, .int32, .float,
        .float, .uint64]
    static let attentionForward = CUDAKernel("attention.cu", "attention_forward", Array(repeating: .floats, count: 6) + attentionShape)
    static let attentionBackwardQuery = CUDAKernel("attention.cu", "attention_backward_query", Array(repeating: .floats, count: 10)
        + attentionShape + [.floats, .floats, .floats, .int32, .float, .float])
    static let attentionBackwardKey = CUDAKernel("attention.cu", "attention_backward_key", Array(repeating: .floats, count: 9)
        + attentionShape + [.floats, .floats, .floats, .int32, .float, .float])
    static let attentionScoreLossRows = CUDAKernel("attention.cu", "attention_score_loss_rows", [.doubles, .floats, .floats,
        .ints, .floats, .floats, .floats, .floats, .int32, .int32, .int32, .int32, .float, .int32, .float])
    // bias.cu
    static let biasAdd = CUDAKernel("bias.cu", "bias_add", [.floats, .floats, .int64, .int32])
    static let biasBackwardPartials = CUDAKernel("bias.cu", "bias_backward_partials", [.floats, .floats, .int64, .int32, .int32])
    // decode_attention.cu
    static let decodeAttention = CUDAKernel("decode_attention.cu", "decode_attention", [.floats, .floats, .floats, .floats, .floats,
        .ints, .int32, .int32, .int32, .int32, .int32, .float, .int32, .int32])
    static let decodeAttentionMerge = CUDAKernel("decode_attention.cu", "decode_attention_merge", [.floats, .floats, .int32, .int32,
        .int32, .int32])
    // dropout.cu
    static let dropoutF32 = CUDAKernel("dropout.cu", "dropout_f32", [.floats, .floats, .int64, .float, .uint64, .uint64])
    // embedding.cu
    static let embeddingForward = CUDAKernel("embedding.cu", "embedding_forward", [.floats, .ints, .ints, .ints, .floats,
        .floats, .floats, .int64, .int32, .int32, .int32, .int32])
    static let embeddingBackwardPieces = CUDAKernel("embedding.cu", "embedding_backward_pieces", [.floats, .floats, .floats,
        .floats, .floats, .ints, .int32, .int32, .int32, .int32, .int32])
    static let embeddingBackwardSegments = CUDAKernel("embedding.cu", "embedding_backward_segments", [.floats, .floats, .floats,
        .floats, .ints, .int32, .int32, .int32, .int32, .int32])
    // gelu.cu
    static let geluForward = CUDAKernel("gelu.cu", "gelu_forward", [.floats, .floats, .int64, .int32])
    static let geluBackward = CUDAKernel("gelu.cu", "gelu_backward", [.floats, .floats, .floats, .int64, .int32])
    // layernorm.cu
    static let layernormForward = CUDAKernel("layernorm.cu", "layernorm_forward", [.floats, .floats, .floats, .floats, .floats,
        .floats, .int32, .int32, .float])
    static let layernormBackwardInput = CUDAKernel("layernorm.cu", "layernorm_backward_input", [.floats, .floats, .floats,
        .floats, .floats, .floats, .int32, .int32])
    static let layernormBackwardPartials = CUDAKernel("layernorm.cu", "layernorm_backward_partials", [.floats, .floats, .floats,
        .floats, .floats, .int32, .int32, .int32])
    // lora.cu
    static let loraForward = CUDAKernel("lora.cu", "lora_forward", [.floats, .floats, .floats, .floats, .floats, .int64,
        .int32, .int32, .int32, .float, .float, .uint64])
    static let loraBackwardRows = CUDAKernel("lora.cu", "lora_backward_rows", [.floats, .floats, .floats, .floats, .floats,
        .int64, .int32, .int32, .int32, .float, .float, .uint64])
    // losses.cu
    static let countValidLabels = CUDAKernel("losses.cu", "count_valid_labels", [.ints, .ints, .int64, .int32])
    static let crossEntropyRows = CUDAKernel("losses.cu", "cross_entropy_rows", [.floats, .floats, .floats, .ints, .ints,
        .int64, .int32, .float])
    static let softCrossEntropyRows = CUDAKernel("losses.cu", "soft_cross_entropy_rows", [.floats, .floats, .floats, .floats,
        .int64, .int32, .float, .float])
    static let msePartial = CUDAKernel("losses.cu", "mse_partial", [.doubles, .floats, .floats, .floats, .int64, .float])
    static let cosineRows = CUDAKernel("losses.cu", "cosine_rows", [.floats, .floats, .floats, .floats, .int64, .int32, .float])
    static let meanFinish = CUDAKernel("losses.cu", "mean_finish", [.floats, .floats, .int64, .ints, .float])
    static let meanFinishDouble = CUDAKernel("losses.cu", "mean_finish_double", [.floats, .doubles, .int32, .float])
    // memory.cu
    static let fillF32 = CUDAKernel("memory.cu", "fill_f32", [.floats, .int64, .float])
    static let scaleF32 = CUDAKernel("memory.cu", "scale_f32", [.floats, .int64, .float])
    static let axpyF32 = CUDAKernel("memory.cu", "axpy_f32", [.floats, .floats, .int64, .float])
    static let sumSquaresPartial = CUDAKernel("memory.cu", "sum_squares_partial", [.doubles, .floats, .int64])
    static let sumFinish = CUDAKernel("memory.cu", "sum_finish", [.floats, .doubles, .int32])
    static let columnSumFinish = CUDAKernel("memory.cu", "column_sum_finish", [.floats, .floats, .floats, .int32, .int32, .int32])
    static let castF32ToBf16 = CUDAKernel("memory.cu", "cast_f32_to_bf16", [.halves, .floats, .int64])
    static let castBf16ToF32 = CUDAKernel("memory.cu", "cast_bf16_to_f32", [.floats, .halves, .int64])
    static let castF32ToF16 = CUDAKernel("memory.cu", "cast_f32_to_f16", [.halves, .floats, .int64])
    static let castF16ToF32 = CUDAKernel("memory.cu", "cast_f16_to_f32", [.floats, .halves, .int64])
    // rmsnorm.cu
    static let rmsnormForward = CUDAKernel("rmsnorm.cu", "rmsnorm_forward", [.floats, .floats, .floats, .floats, .int32, .int32, .float])
    static let rmsnormBackwardInput = CUDAKernel("rmsnorm.cu", "rmsnorm_backward_input", [.floats, .floats, .floats, .floats,
        .floats, .int32, .int32])
    static let rmsnormBackwardPartials = CUDAKernel("rmsnorm.cu", "rmsnorm_backward_partials", [.floats, .floats, .floats,
        .floats, .int32, .int32, .int32])
    // rope.cu
    static let rope = CUDAKernel("rope.cu", "rope", [.floats, .floats, .ints, .floats, .int64, .int32, .int32, .float])
    // softmax.cu
    static let maskedSoftmaxForward = CUDAKernel("softmax.cu", "masked_softmax_forward", [.floats, .floats, .floats, .ints,
        .floats, .int32, .int32, .int32, .int32])
    static let maskedScores = CUDAKernel("softmax.cu", "masked_scores", [.floats, .ints, .floats, .int32, .int32, .int32, .int32])
    static let maskedSoftmaxBackward = CUDAKernel("softmax.cu", "masked_softmax_backward", [.floats, .floats, .floats, .int64,
        .int32])
    // swiglu.cu
    static let swigluForward = CUDAKernel("swiglu.cu", "swiglu_forward", [.floats, .floats, .floats, .int64])
    static let swigluBackward = CUDAKernel("swiglu.cu", "swiglu_backward", [.floats, .floats, .floats, .floats, .floats, .int64])
    // int8_linear.cu
    static let int8QuantizeRows = CUDAKernel("int8_linear.cu", "int8_quantize_rows", [.ints, .floats, .floats, .int32, .int32, .int32])
    static let int8Linear = CUDAKernel("int8_linear.cu", "int8_linear", [.floats, .ints, .floats, .ints, .floats, .floats, .int32, .int32,
        .int32])
    static let int8WeightLinear = CUDAKernel("int8_linear.cu", "int8_weight_linear", [.floats, .floats, .int32, .ints, .floats, .floats,
        .int32, .int32, .int32])
    // tanh.cu
    static let tanhForward = CUDAKernel("tanh.cu", "tanh_forward", [.floats, .floats, .int64])
    static let tanhBackward = CUDAKernel("tanh.cu", "tanh_backward", [.floats, .floats, .floats, .int64])
    // lstm_cell.cu, gru_cell.cu, rnn_cell.cu: … lengths, t, B, H, ldy
    static let recurrentStep: [CUDAKernel.Parameter] = [.ints, .int64, .int32, .int32, .int64]
    static let lstmCellForward = CUDAKernel("lstm_cell.cu", "lstm_cell_forward", Array(repeating: .floats, count: 8) + recurrentStep)
    static let lstmCellBackward = CUDAKernel("lstm_cell.cu", "lstm_cell_backward", Array(repeating: .floats, count: 9) + recurrentStep)
    static let gruCellForward = CUDAKernel("gru_cell.cu", "gru_cell_forward", Array(repeating: .floats, count: 6) + recurrentStep)
    static let gruCellBackward = CUDAKernel("gru_cell.cu", "gru_cell_backward", Array(repeating: .floats, count: 7) + recurrentStep)
    static let rnnCellForward = CUDAKernel("rnn_cell.cu", "rnn_cell_forward", Array(repeating: .floats, count: 5) + recurrentStep)
    static let rnnCellBackward = CUDAKernel("rnn_cell.cu", "rnn_cell_backward", Array(repeating: .floats, count: 5) + recurrentStep)
    // sequence_pool.cu
    static let sequencePoolForward = CUDAKernel("sequence_pool.cu", "sequence_pool_forward", [.floats, .ints, .floats, .ints, .int32,
        .int32, .int32, .int32, .int32])
    static let sequencePoolBackward = CUDAKernel("sequence_pool.cu", "sequence_pool_backward", [.floats, .floats, .ints, .ints, .int32,
        .int32, .int32, .int32, .int32])
    // attention_tc.cu: attention_tc_{forward,backward_query,backward_key}_{bf16,f16}_hs{32,64}
    enum TensorCorePass: String, CaseIterable { case forward, backwardQuery = "backward_query", backwardKey = "backward_key" }

    static func tensorCoreAttention(_ pass: TensorCorePass, half: DType, headSize: Int) -> CUDAKernel {
        precondition((half == .bf16 || half == .f16) && (headSize == 32 || headSize == 64), "no tensor-core attention kernel for \(half) HS \(headSize)")
        let name = "attention_tc_\(pass.rawValue)_\(half == .bf16 ? "bf16" : "f16")_hs\(headSize)"
        let shape: [CUDAKernel.Parameter] = [.ints, .floats, .int32, .int32, .int32, .int32, .int32, .float, .float, .uint64]   // mask … seed
        switch pass {
        case .forward: return CUDAKernel("attention_tc.cu", name, Array(repeating: .floats, count: 5) + shape)
        case .backwardQuery: return CUDAKernel("attention_tc.cu", name, Array(repeating: .floats, count: 9) + shape)
        case .backwardKey: return CUDAKernel("attention_tc.cu", name, Array(repeating: .floats, count: 8) + shape)
        }
    }

    /// Every entry, for the tests.
    static let all: [CUDAKernel] = [
        adamwStep, attentionForward, attentionBackwardQuery, attentionBackwardKey, attentionScoreLossRows, biasAdd, biasBackwardPartials, decodeAttention, decodeAttentionMerge,
        dropoutF32, embeddingForward, embeddingBackwardPieces, embeddingBackwardSegments, geluForward, geluBackward, layernormForward,
        layernormBackwardInput, layernormBackwardPartials, loraForward, loraBackwardRows, countValidLabels, crossEntropyRows, softCrossEntropyRows,
        msePartial, cosineRows, meanFinish, meanFinishDouble, fillF32, scaleF32, axpyF32, sumSquaresPartial, sumFinish, columnSumFinish,
        castF32ToBf16, castBf16ToF32, castF32ToF16, castF16ToF32, rmsnormForward, rmsnormBackwardInput, rmsnormBackwardPartials, rope, swigluForward, swigluBackward, maskedSoftmaxForward, maskedSoftmaxBackward, maskedScores, tanhForward,
        tanhBackward, int8QuantizeRows, int8Linear, int8WeightLinear, lstmCellForward, lstmCellBackward, gruCellForward, gruCellBackward,
        rnnCellForward, rnnCellBackward, sequencePoolForward, sequencePoolBackward,
    ] + TensorCorePass.allCases.flatMap { pass in
        [DType.bf16, .f16].flatMap { half in [32, 64].map { tensorCoreAttention(pass, half: half, headSize: $0) } }
    }
}
