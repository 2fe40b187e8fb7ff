// The settings a run's errors can point at, and the errors of a run: a diverged loss, an
// interruption, a plan that does not fit. Each says what happened in the library's words; a
// front end (the CLI) names its own flags for the settings (Backend/Settings.swift).
import Backend

public extension Setting {
    static let learningRate = Setting("learning rate")
    static let maxGradNorm = Setting("gradient-norm limit")
    static let epochs = Setting("epochs")
    static let maxSteps = Setting("step limit")
    static let recompute = Setting("recompute")
    static let studentLayers = Setting("student layers")
    static let hiddenSize = Setting("recurrent hidden size")
    static let embeddingSize = Setting("recurrent embedding size")
    static let studentInit = Setting("student initialisation")
    static let layerMap = Setting("layer map")
    static let resume = Setting("resume")
    static let weightDecay = Setting("weight decay")
    static let warmup = Setting("warmup")
    static let seed = Setting("seed")
    static let bucket = Setting("length bucketing")
    static let accumulation = Setting("gradient accumulation")
    static let output = Setting("output folder")
    static let overwrite = Setting("overwrite")
    static let metric = Setting("metric")
    // loraRank is the Models target's (LoRA.swift), which checks it against the model's widths.
}

/// A loss or gradient that is not a finite number: the run stopped before applying that step's
/// update, so the newest checkpoint and the best model on disk are intact.
public struct TrainingDiverged: SettingsError, Sendable {
    public let stage: String?
    public let step: Int
    public let loss, gradientNorm: Double
    /// The newest complete checkpoint and the best model saved so far, when there are any.
    public var checkpoint: String?
    public var bestModel: String?
    /// Found by the evaluation after step `step` (its dev loss is `loss`): that step's update
    /// was applied, and neither a checkpoint nor the model was saved after it.
    public var onDev = false

    public var message: SettingText {
        let where_ = stage.map { " of the \($0) stage" } ?? ""
        var text: SettingText = onDev
            ? "after step \(step)\(where_) the dev loss is \(loss), not a finite number (the weights or the forward pass overflowed); stopped without saving the model or a checkpoint."
            : "step \(step)\(where_): the loss is \(loss) and the gradient norm \(gradientNorm); stopped without applying the update."
        if let checkpoint { text = text + " The newest checkpoint is \(checkpoint)." }
        if let bestModel { text = text + " The best model so far is in \(bestModel)." }
        return text + " Lower the \(Setting.learningRate) or the \(Setting.maxGradNorm), then start again (in this folder with \(Setting.overwrite))"
            + (checkpoint == nil ? "" : ", or continue from the checkpoint with \(Setting.resume)")
    }
}

/// The run was asked to stop (Ctrl-C); its state is in `checkpoint`.
public struct RunInterrupted: SettingsError, Sendable {
    public let stage: String?
    public let step, totalSteps: Int
    public let checkpoint: String

    public var message: SettingText {
        "interrupted" + SettingText(stringLiteral: stage.map { " in the \($0) stage" } ?? "")
            + " at step \(step) of \(totalSteps); checkpoint saved in \(checkpoint). Continue with the same settings and \(Setting.resume)."
    }
}
