// Dynamic int8 linear layers (Kernels/cpu/int8_linear.c): a Linear's weight quantized per output
// channel (symmetric int8 and one fp32 scale per row of W), laid out for the kernels once, when a
// quantized model loads; the activations are quantized per row on every call.
import Foundation
import Kernels

/// W [N, K] as int8 in the kernels' layout, its scales and its row sums.
public struct Int8Weight {
    /// dynamic: the inputs are quantized per row too, and the products are int8 × int8
    /// (rt_int8_linear; `packed` in its panel layout). weightOnly: the inputs stay fp32 and meet
    /// the int8 weights converted to float (rt_int8_weight_linear; `packed` is W [N, K] as stored)
    /// — for decoders, whose activations have outliers that per-row int8 flattens.
    public enum Kind: Sendable { case dynamic, weightOnly }
    public let kind: Kind
    public let packed: Tensor        // the int8 bytes, held as i32 elements
    public let scales: Tensor        // [N] f32: W ≈ scales[n] · values[n, :]
    public let sums: Tensor          // dynamic: [16·⌈N/16⌉] i32, Σ_k values[n, k]
    public let outFeatures, inFeatures: Int
}

/// Symmetric per-row int8 quantization, as the kernels do it: scale = max|row| / 127 (0 for a zero
/// row), value = round-half-even(x · 127 / max|row|). Rows of `values` [rows, columns].
public func quantizeRowsInt8(_ values: [Float], rows: Int, columns: Int) -> (values: [Int8], scales: [Float]) {
    precondition(values.count == rows * columns, "quantizeRowsInt8: \(values.count) values for \(rows)×\(columns)")
    var q = [Int8](repeating: 0, count: rows * columns), scales = [Float](repeating: 0, count: rows)
    values.withUnsafeBufferPointer { x in
        q.withUnsafeMutableBufferPointer { out in
            scales.withUnsafeMutableBufferPointer { s in
                rt_quantize_rows_i8(out.baseAddress, s.baseAddress, x.baseAddress, Int64(rows), Int32(columns), Int32(columns), Int32(columns))
            }
        }
    }
    return (q, scales)
}

/// The values int8 rows stand for: values[r, c] · scales[r].
public func dequantizeRowsInt8(_ values: [Int8], scales: [Float], columns: Int) -> [Float] {
    precondition(values.count == scales.count * columns, "dequantizeRowsInt8: \(values.count) values for \(scales.count)×\(columns)")
    var out = [Float](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { q in
        scales.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { rt_dequantize_rows_i8($0.baseAddress, q.baseAddress, s.baseAddress, Int64(scales.count), Int32(columns)) }
        }
    }
    return out
}

public extension Backend {
    /// Where this backend has int8 kernels: W [outFeatures, inFeatures] (`values`, `scales` per
    /// row) laid out for them; nil where it has none.
    func int8Weight(values: [Int8], scales: [Float], outFeatures N: Int, inFeatures K: Int, kind: Int8Weight.Kind = .dynamic) throws -> Int8Weight? {
        guard int8Kernels != nil else { return nil }
        precondition(values.count == N * K && scales.count == N, "int8Weight: values are not \(N)×\(K) or scales not \(N)")
        var packed: [Int8], sums: [Int32]
        switch (kind, int8Layout) {
        case (_, .wordRows):
            let K4 = (K + 3) / 4
            packed = [Int8](repeating: 0, count: N * 4 * K4)
            for n in 0..<N { packed.replaceSubrange((n * 4 * K4)..<(n * 4 * K4 + K), with: values[(n * K)..<((n + 1) * K)]) }
            sums = [0]
        case (.dynamic, .cpu):
            let groups = (N + 15) / 16
            packed = [Int8](repeating: 0, count: Int(rt_int8_packed_bytes(Int32(N), Int32(K))))
            sums = [Int32](repeating: 0, count: 16 * groups)
            values.withUnsafeBufferPointer { w in
                packed.withUnsafeMutableBufferPointer { p in
                    sums.withUnsafeMutableBufferPointer { s in rt_int8_pack_weight(p.baseAddress, s.baseAddress, w.baseAddress, Int32(N), Int32(K)) }
                }
            }
        case (.weightOnly, .cpu):
            packed = values + [Int8](repeating: 0, count: (4 - values.count % 4) % 4)
            sums = [0]
        }
        let weight = Int8Weight(kind: kind, packed: try allocate(packed.count / 4, .i32), scales: try allocate(N, .f32),
                                sums: try allocate(sums.count, .i32), outFeatures: N, inFeatures: K)
        packed.withUnsafeBytes { runUpload(weight.packed, $0) }
        scales.withUnsafeBytes { runUpload(weight.scales, $0) }
        sums.withUnsafeBytes { runUpload(weight.sums, $0) }
        return weight
    }

    /// y[rows, N] = x·Wᵀ + bias: dynamic weights with x quantized per row to int8 and integer
    /// products summed exactly, weight-only ones in fp32; x's rows are `inputStride` (default K) apart.
    func int8Linear(_ y: Tensor, _ x: Tensor, weight: Int8Weight, bias: Tensor?, rows: Int, inputStride: Int? = nil) {
        let (N, K) = (weight.outFeatures, weight.inFeatures), ldx = inputStride ?? K
        precondition(y.count >= rows * N && (rows == 0 || x.count >= (rows - 1) * ldx + K) && ldx >= K,
                     "int8Linear: y or x is too small for \(rows) rows of \(K) → \(N)")
        precondition(bias.map { $0.count == N } ?? true, "int8Linear: bias is not \(N)")
        runInt8Linear(y, x, weight: weight, bias: bias, rows: rows, inputStride: ldx)
    }
}

/// How a backend's int8 kernels hold W [N, K]: the CPU's (rt_int8_pack_weight's panels for the
/// dynamic kind, the rows as stored for weight-only), or rows of 32-bit words, 4 int8 each, every
/// row zero padded to a whole word (CUDA's int8_linear.cu, both kinds).
public enum Int8Layout: Sendable { case cpu, wordRows }

public extension BackendOps {
    var int8Kernels: String? { nil }
    var int8Layout: Int8Layout { .cpu }
    /// Decoding's few rows (CUDA's int8_weight_linear is a plain tiled kernel: a prompt goes to cuBLASLt).
    var weightOnlyInt8Rows: Int { 16 }
    func runInt8Linear(_ y: Tensor, _ x: Tensor, weight: Int8Weight, bias: Tensor?, rows: Int, inputStride: Int) {
        preconditionFailure("runInt8Linear: this backend has no int8 kernels (int8Weight returns nil here)")
    }
}
