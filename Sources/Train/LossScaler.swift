// Dynamic loss scaling for fp16 mixed precision. Backward runs on the loss times `scale`, so
// small gradients survive the rounding of matmul operands to fp16 (whose smallest normal is
// 6.1e-5); the optimizer sees the gradients divided by `scale` again (folded into clipping).
// A step whose gradients hold an inf or NaN (their squared norm is not finite) is skipped and
// the scale halves; after `growthInterval` good steps in a row it doubles. Powers of two only,
// so scaling and unscaling are exact in fp32.
public struct LossScaler: Sendable, Codable, Equatable {
    public private(set) var scale: Float
    public let growthInterval: Int
    public let minimum: Float, maximum: Float
    public private(set) var goodSteps = 0
    public private(set) var skippedSteps = 0

    public init(scale: Float = 65536, growthInterval: Int = 2000, minimum: Float = 1, maximum: Float = 16_777_216) {
        precondition(scale > 0 && growthInterval > 0 && minimum <= scale && scale <= maximum)
        self.scale = scale
        self.growthInterval = growthInterval
        self.minimum = minimum
        self.maximum = maximum
    }

    /// Records a step's outcome; returns whether its update may be applied.
    public mutating func update(finiteGradients: Bool) -> Bool {
        guard finiteGradients else {
            scale = max(scale / 2, minimum)
            goodSteps = 0
            skippedSteps += 1
            return false
        }
        goodSteps += 1
        if goodSteps == growthInterval {
            scale = min(scale * 2, maximum)
            goodSteps = 0
        }
        return true
    }
}
