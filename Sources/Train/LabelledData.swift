// The labelled data of a run: training and dev examples (a dev file, or a seeded held-out split
// of the training file), the label names and every example's label id.
import Foundation

/// Where a run's text is and how to read it.
public struct DataFiles: Sendable {
    public var train: String
    /// Development data; nil: `devSplit` of the training data, held out with the run's seed.
    public var dev: String?
    public var devSplit: Double
    /// Test data, evaluated at the end (distillation).
    public var test: String?
    public var columns: ColumnSpec

    public init(train: String, dev: String? = nil, devSplit: Double = 0.1, test: String? = nil,
                columns: ColumnSpec = ColumnSpec(text: .name("text"), label: .name("label"))) {
        self.train = train; self.dev = dev; self.devSplit = devSplit; self.test = test; self.columns = columns
    }
}

public struct LabelledData: Sendable {
    public var train: [Example], dev: [Example]
    public var names: [String]
    public var trainLabels: [Int32], devLabels: [Int32]
    /// Records without text that were skipped, one note per file (Dataset.withText).
    public var skipped: [String] = []

    /// `names`: the label names to use (a teacher's); nil: those of the training data.
    public static func load(_ files: DataFiles, seed: UInt64, names given: [String]? = nil) throws -> LabelledData {
        var spec = files.columns
        if spec.label == nil { spec.label = .name("label") }
        // A record without text teaches nothing and scores nothing: skipped, and said so.
        var skipped: [String] = []
        var trainExamples = try Dataset.loadWithText(files.train, columns: spec) { skipped.append($0) }
        try Dataset.checkLabels(trainExamples, path: files.train, columns: spec, namesGiven: given != nil)
        let devExamples: [Example]
        if let dev = files.dev {
            devExamples = try Dataset.loadWithText(dev, columns: spec) { skipped.append($0) }
            try Dataset.checkLabels(devExamples, path: dev, columns: spec, headerCheck: false)
        } else {
            let total = trainExamples.count, everyLabel = Dataset.labelNames(trainExamples)
            (trainExamples, devExamples) = Dataset.split(trainExamples, fraction: files.devSplit, seed: seed)
            guard !trainExamples.isEmpty else {
                throw DataError("\(files.train): \(total) record\(total == 1 ? "" : "s") with text, all held out by --dev-split \(files.devSplit); "
                                + "give more data, or a separate --dev file")
            }
            // The split is random: with few examples of a label it can hold out all of them.
            let kept = Set(Dataset.labelNames(trainExamples)), lost = everyLabel.filter { !kept.contains($0) }
            if given == nil, !lost.isEmpty {
                let counts = lost.prefix(5).map { label in "\(label) (\(devExamples.count { $0.label == label }))" }
                throw DataError("\(files.train): the dev split (--dev-split \(files.devSplit), seed \(seed)) held out every example of label "
                                + "\(counts.joined(separator: ", "))\(lost.count > 5 ? " and \(lost.count - 5) more" : ""); "
                                + "give more examples of each label, or a separate --dev file")
            }
        }
        let names = given ?? Dataset.labelNames(trainExamples), whose = given == nil ? "the training data's" : "the model's"
        guard names.count >= 2 else {
            throw DataError("\(files.train): only one label (\(names.first ?? "none")); a classifier needs two or more")
        }
        return LabelledData(train: trainExamples, dev: devExamples, names: names,
                            trainLabels: try Dataset.labelIds(trainExamples, names: names, path: files.train, whose: whose),
                            devLabels: try Dataset.labelIds(devExamples, names: names, path: files.dev ?? "\(files.train) (held-out split)", whose: whose),
                            skipped: skipped)
    }

    /// Reads the test file (files.test) as the end of the run will, labels checked against
    /// `names`: a missing or bad one is refused before the training, not after it.
    public static func checkTest(_ files: DataFiles, names: [String]) throws {
        guard let test = files.test else { return }
        var spec = files.columns
        if spec.label == nil { spec.label = .name("label") }
        _ = try Dataset.labelIds(try Dataset.loadWithText(test, columns: spec) { _ in }, names: names, path: test)
    }

    /// "6228 training and 692 dev examples, labels 0, 1"
    public var summary: String {
        "\(train.count) training and \(dev.count) dev examples, labels \(names.joined(separator: ", "))"
    }
}
