// MPNet's relative position bias: one table [buckets, NH] shared by every layer, looked up by the
// T5-style bidirectional bucket of (key position − query position) into a bias [NH,T,T] that the
// fused attention adds to its scores. The lookup is a matmul with a one-hot [buckets, T·T]
// matrix built once per sequence length, so forward and backward run on any backend:
//   bias[NH, T·T] = tableᵀ · oneHot,   dTable[buckets, NH] += oneHot · dBiasᵀ
import Backend
import Foundation

public enum RelativePosition {
    /// HF's MPNet relative_position_bucket (max_distance 128), in float32 as torch computes it:
    /// keys at or before the query in the lower half, keys after it in the upper half; exact for
    /// |distance| < buckets/4, then log-spaced up to maxDistance.
    public static func bucket(_ relative: Int, buckets: Int, maxDistance: Int = 128) -> Int {
        let half = buckets / 2
        var n = -relative
        var result = n < 0 ? half : 0
        n = abs(n)
        let exact = half / 2
        if n < exact { return result + n }
        let scaled = Float(Foundation.log(Float(n) / Float(exact))) / Float(Foundation.log(Double(maxDistance) / Double(exact))) * Float(half - exact)
        result += min(exact + Int(scaled), half - 1)
        return result
    }

    /// oneHot[bucket(j − i), i·T + j] = 1, as a [buckets, T·T] matrix.
    static func oneHot(length T: Int, buckets: Int) -> [Float] {
        var m = [Float](repeating: 0, count: buckets * T * T)
        for i in 0..<T { for j in 0..<T { m[bucket(j - i, buckets: buckets) * T * T + i * T + j] = 1 } }
        return m
    }
}

extension BertModel {
    static let relativeBiasName = "encoder.relative_attention_bias.weight"

    /// The bias [NH,T,T] for the loaded batch's length (nil without a relative position bias).
    func relativePositionBias(_ a: BertActivations) -> Tensor? {
        guard config.relativeBuckets > 0, let bias = a.positionBias, let oneHot = a.bucketOneHot else { return nil }
        let (T, NB, NH) = (a.length, config.relativeBuckets, config.heads)
        if a.oneHotLength != T {
            RelativePosition.oneHot(length: T, buckets: NB).withUnsafeBytes { backend.upload(oneHot.slice(0, NB * T * T), $0) }
            a.oneHotLength = T
        }
        backend.matmul(bias.slice(0, NH * T * T), parameters.relativeAttentionBias!.weight, oneHot.slice(0, NB * T * T), bias: nil,
                       Gemm(m: NH, n: T * T, k: NB, transA: true))
        return bias.slice(0, NH * T * T)
    }

    /// dTable += oneHot · dBiasᵀ, from the bias gradient summed over the layers.
    func relativePositionBiasBackward(_ a: BertActivations, dBias: Tensor) {
        guard let oneHot = a.bucketOneHot else { return }
        let (T, NB, NH) = (a.length, config.relativeBuckets, config.heads)
        backend.matmul(parameters.relativeAttentionBias!.gradient, oneHot.slice(0, NB * T * T), dBias, bias: nil,
                       Gemm(m: NB, n: NH, k: T * T, transB: true, beta: 1))
    }
}
