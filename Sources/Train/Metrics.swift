// Classification metrics: accuracy, macro-F1 (mean over classes of F1, as scikit-learn's
// f1_score(average="macro")), Matthews correlation (multi-class, Gorodkin's R_K).
import Foundation
public struct ClassificationMetrics: Sendable, Codable {
    public var accuracy, macroF1, mcc: Double
    public var loss: Double
    public var examples: Int
    /// A language model's dev metrics: accuracy is the next-token accuracy, loss the mean
    /// next-token loss; macro-F1 and MCC are not computed (0 here, and left out of the JSON,
    /// which gives the perplexity instead).
    public var nextToken: Bool? = nil
    enum CodingKeys: String, CodingKey { case accuracy, macroF1 = "macro_f1", mcc, loss, examples, nextToken = "next_token", perplexity }

    /// The value of `metric` (accuracy, macro_f1, mcc; loss as −loss), higher being better.
    public func score(_ metric: String) -> Double {
        switch metric {
        case "macro_f1": return macroF1
        case "mcc": return mcc
        case "loss": return -loss
        default: return accuracy
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(accuracy, forKey: .accuracy)
        try c.encode(loss, forKey: .loss)
        try c.encode(examples, forKey: .examples)
        if nextToken == true {
            try c.encode(true, forKey: .nextToken)
            if Foundation.exp(loss).isFinite { try c.encode(Foundation.exp(loss), forKey: .perplexity) }
        } else {
            try c.encode(macroF1, forKey: .macroF1)
            try c.encode(mcc, forKey: .mcc)
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        accuracy = try c.decode(Double.self, forKey: .accuracy)
        loss = try c.decode(Double.self, forKey: .loss)
        examples = try c.decode(Int.self, forKey: .examples)
        nextToken = try c.decodeIfPresent(Bool.self, forKey: .nextToken)
        // Absent for a language model (not computed); files written before that held 0.
        macroF1 = try c.decodeIfPresent(Double.self, forKey: .macroF1) ?? 0
        mcc = try c.decodeIfPresent(Double.self, forKey: .mcc) ?? 0
    }

    public init(predictions: [Int], labels: [Int], classes: Int, loss: Double) {
        precondition(predictions.count == labels.count)
        let n = labels.count
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, y) in zip(predictions, labels) { confusion[y][p] += 1 }
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = n > 0 ? Double(correct) / Double(n) : 0
        // Over the classes that occur among the labels or the predictions, as sklearn's default
        // (labels=None): a class absent from both (a test set of one class, all predicted right)
        // would count as an F1 of 0 and halve a perfect score.
        var f1Sum = 0.0, present = 0
        for k in 0..<classes {
            let tp = Double(confusion[k][k])
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][k] })
            let actual = Double(confusion[k].reduce(0, +))
            guard predicted + actual > 0 else { continue }
            f1Sum += 2 * tp / (predicted + actual)
            present += 1
        }
        macroF1 = present > 0 ? f1Sum / Double(present) : 0
        let t = (0..<classes).map { k in Double(confusion[k].reduce(0, +)) }                 // true counts
        let p = (0..<classes).map { k in Double((0..<classes).reduce(0) { $0 + confusion[$1][k] }) }   // predicted counts
        let c = Double(correct), s = Double(n)
        let numerator = c * s - zip(t, p).reduce(0) { $0 + $1.0 * $1.1 }
        let denominator = ((s * s - p.reduce(0) { $0 + $1 * $1 }) * (s * s - t.reduce(0) { $0 + $1 * $1 })).squareRoot()
        mcc = denominator > 0 ? numerator / denominator : 0
        self.loss = loss
        examples = n
    }
}

/// Softmax of one row of logits, in double (the probabilities predict and serve report).
public func classProbabilities(_ logits: [Float]) -> [Double] {
    let m = logits.max() ?? 0, exps = logits.map { Foundation.exp(Double($0 - m)) }, sum = exps.reduce(0, +)
    return exps.map { $0 / sum }
}

/// The probabilities as predict --json and serve write them: an object from label name to probability.
public func labelledProbabilities(_ probabilities: [Double], names: [String]) -> [String: Double] {
    Dictionary(zip(names, probabilities), uniquingKeysWith: max)
}
