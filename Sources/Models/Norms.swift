// The norms of every model family, with typed views of their parameters:
//   LayerNorm: y[N, C] = (x − mean)·rstd·weight + bias, mean and rstd [N] saved for backward
//              (BERT, MPNet, GPT-2).
//   RMSNorm:   y[N, C] = x·rstd·weight, rstd = 1/√(mean x² + eps) [N] saved (Llama family).
//   Norm:      either, for blocks shared by families (the decoder layer).
import Backend

public struct LayerNorm {
    public let weight, bias: Parameter   // [C]
    public let eps: Float

    public func forward(_ b: Backend, _ y: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, rows: Int, channels: Int) {
        b.layerNormForward(y, mean: mean, rstd: rstd, x, weight: weight.weight, bias: bias.weight, rows: rows, channels: channels, eps: eps)
    }

    /// dx from dy; the weight and bias gradients accumulate when they train (frozen ones have none).
    public func backward(_ b: Backend, dx: Tensor, dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        b.layerNormBackward(dx: dx, dWeight: weight.grad, dBias: bias.grad, dOut: dy, x, weight: weight.weight,
                            mean: mean, rstd: rstd, rows: rows, channels: channels)
    }
}

public struct RMSNorm {
    public let weight: Parameter   // [C]
    public let eps: Float

    public func forward(_ b: Backend, _ y: Tensor, rstd: Tensor, _ x: Tensor, rows: Int, channels: Int) {
        b.rmsNormForward(y, rstd: rstd, x, weight: weight.weight, rows: rows, channels: channels, eps: eps)
    }

    /// dx from dy; the weight gradient accumulates when it trains.
    public func backward(_ b: Backend, dx: Tensor, dy: Tensor, _ x: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        b.rmsNormBackward(dx: dx, dWeight: weight.grad, dOut: dy, x, weight: weight.weight, rstd: rstd, rows: rows, channels: channels)
    }
}

/// A LayerNorm or an RMSNorm: `mean` is only used by LayerNorm.
public enum Norm {
    case layer(LayerNorm)
    case rms(RMSNorm)

    public func forward(_ b: Backend, _ y: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, rows: Int, channels: Int) {
        switch self {
        case .layer(let n): n.forward(b, y, mean: mean, rstd: rstd, x, rows: rows, channels: channels)
        case .rms(let n): n.forward(b, y, rstd: rstd, x, rows: rows, channels: channels)
        }
    }

    public func backward(_ b: Backend, dx: Tensor, dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        switch self {
        case .layer(let n): n.backward(b, dx: dx, dy: dy, x, mean: mean, rstd: rstd, rows: rows, channels: channels)
        case .rms(let n): n.backward(b, dx: dx, dy: dy, x, rstd: rstd, rows: rows, channels: channels)
        }
    }

    /// Its parameters, in layout order.
    public var parameters: [Parameter] {
        switch self {
        case .layer(let n): return [n.weight, n.bias]
        case .rms(let n): return [n.weight]
        }
    }
}
