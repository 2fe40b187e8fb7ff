// A decoder's weights packed once for inference (retort generate, augment's generator, eval,
// predict, compare and serve of a decoder classifier; not a teacher beside a student's training):
// every Linear and the LM or score head in the backend's own
// layout (PackedWeight; on the CPU panels of 16 output channels, cpu/packed_gemm.c), so neither a
// prompt's matmuls — which OpenBLAS would repack on every call — nor decoding's few rows re-stride
// them. On the 2-core Zen 3 VM, SmolLM2-135M's layer matmuls ran 1.1–1.3× OpenBLAS at 128 rows
// and 1.2–1.4× rt_sgemm_rows at one row. The copies take as much memory again as those weights,
// so they are made only where the backend has a layout of its own and the memory is free. Past
// 512 rows the CPU multiplies the original weights instead (CPUBackend.runMatmulPacked).
import Backend

extension DecoderModel {
    /// Packs every Linear and the head for inference; returns the bytes the packed copies take,
    /// 0 where nothing changes: a backend that keeps weights as they are, an int8 model (its
    /// kernels read their own layout), or less than twice that memory available.
    @discardableResult
    public func packForInference() throws -> Int {
        precondition(!trains && lora == nil, "packForInference: inference models without adapters only")
        guard int8Weights.isEmpty, packedWeights.isEmpty else { return 0 }
        let linears = quantizableLinears
        let counts = linears.map { backend.packedWeightCount(n: $0.outFeatures, k: $0.inFeatures) }
        let bytes = counts.reduce(0, +) * MemoryLayout<Float>.size
        guard bytes > 0, backend.memoryUse.available > 2 * bytes else { return 0 }
        var made: [String: PackedWeight] = [:]
        for (linear, count) in zip(linears, counts) {
            made[Self.linearKey(linear)] = backend.packWeight(linear.weight.weight, n: linear.outFeatures, k: linear.inFeatures,
                                                              transB: true, into: try backend.allocate(count, .f32))
        }
        packedWeights = made
        return bytes
    }
}
