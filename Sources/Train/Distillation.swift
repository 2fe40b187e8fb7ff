// Task distillation set-up: which student to build from a teacher (its odd or even layers, a
// uniform map, or another checkpoint), which student layer learns from which teacher layer, and
// the checks that reject a pair that cannot be distilled (vocabulary, heads, widths, ranges).
import Backend
import Foundation
import Models

public enum DistillationMethod: String, Sendable, CaseIterable, Codable {
    case tinybert, distilbert
}

public enum DistillationStage: String, Sendable, CaseIterable, Codable {
    case intermediate, prediction
}

/// Where the student's weights come from.
public enum StudentInit: Equatable, Sendable {
    case odd, even, uniform       // the teacher's layers {1,3,5,…}, {2,4,6,…} (1-based) or (i+1)·k
    case folder(String)           // another checkpoint (its config decides the student's size)

    public init(_ text: String) {
        switch text {
        case "odd": self = .odd
        case "even": self = .even
        case "uniform": self = .uniform
        default: self = .folder(text)
        }
    }

    public var name: String {
        switch self {
        case .odd: return "odd"
        case .even: return "even"
        case .uniform: return "uniform"
        case .folder(let path): return path
        }
    }

    /// The 0-based teacher layer each of `layers` student layers is copied from.
    public func teacherLayers(student layers: Int, teacher: Int) throws -> [Int] {
        switch self {
        case .odd: return (0..<layers).map { 2 * $0 }
        case .even: return (0..<layers).map { 2 * $0 + 1 }
        case .uniform: return (0..<layers).map { ($0 + 1) * (teacher / layers) - 1 }
        case .folder: return []
        }
    }
}

/// Student layer i learns from teacher layer map[i] (0-based): its attention scores and its output.
public struct LayerMap: Equatable, Sendable, CustomStringConvertible {
    public var pairs: [(student: Int, teacher: Int)]

    public static func == (l: LayerMap, r: LayerMap) -> Bool { l.pairs.map(\.student) == r.pairs.map(\.student) && l.pairs.map(\.teacher) == r.pairs.map(\.teacher) }

    /// TinyBERT's map: student layer i ↔ teacher layer (i+1)·k − 1, k = teacher layers / student layers.
    public static func uniform(student: Int, teacher: Int) -> LayerMap {
        let k = teacher / student
        return LayerMap(pairs: (0..<student).map { ($0, ($0 + 1) * k - 1) })
    }

    /// The default: each student layer learns from the teacher layer it was copied from (odd: 0,2,4;
    /// even: 1,3,5 — TinyBERT's uniform map; uniform: the same), TinyBERT's uniform map for a
    /// student from a folder. For odd students this beat the uniform map on SST-2 (README).
    public static func following(_ initialisation: StudentInit, student: Int, teacher: Int) -> LayerMap {
        let copied = (try? initialisation.teacherLayers(student: student, teacher: teacher)) ?? []
        guard copied.count == student, copied.allSatisfy({ (0..<teacher).contains($0) }) else { return uniform(student: student, teacher: teacher) }
        return LayerMap(pairs: copied.enumerated().map { ($0.offset, $0.element) })
    }

    /// "0:1,1:3,2:5": 0-based student layer : 0-based teacher layer.
    public init(parsing text: String, student: Int, teacher: Int) throws {
        var pairs: [(Int, Int)] = []
        for item in text.split(separator: ",") {
            let parts = item.split(separator: ":").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2, let s = parts[0], let t = parts[1] else {
                throw InvalidSetting("\(Setting.layerMap): '\(item)' is not student:teacher (0-based layer numbers, e.g. 0:1,1:3,2:5)")
            }
            guard s >= 0, t >= 0 else { throw InvalidSetting("\(Setting.layerMap): '\(item)': layers are numbered from 0 (e.g. 0:1,1:3,2:5)") }
            guard (0..<student).contains(s) else { throw InvalidSetting("\(Setting.layerMap): student layer \(s) is out of range (the student has layers 0…\(student - 1))") }
            guard (0..<teacher).contains(t) else { throw InvalidSetting("\(Setting.layerMap): teacher layer \(t) is out of range (the teacher has layers 0…\(teacher - 1))") }
            guard !pairs.contains(where: { $0.0 == s }) else { throw InvalidSetting("\(Setting.layerMap): student layer \(s) is mapped twice") }
            pairs.append((s, t))
        }
        guard !pairs.isEmpty else { throw InvalidSetting("\(Setting.layerMap): empty (give student:teacher pairs, e.g. 0:1,1:3,2:5)") }
        self.pairs = pairs
    }

    init(pairs: [(Int, Int)]) { self.pairs = pairs.map { (student: $0.0, teacher: $0.1) } }

    public var description: String { pairs.map { "\($0.student):\($0.teacher)" }.joined(separator: ",") }
}

public enum Distillation {
    /// A student classifier for `teacher`: `layers` layers copied from the teacher (odd, even,
    /// uniform), or the checkpoint in a folder, checked against the teacher.
    public static func makeStudent(teacher: Classifier, teacherFolder: String, initFrom: StudentInit, layers: Int?,
                                   backend: Backend, seed: UInt64) throws -> Classifier {
        let t = teacher.model
        if case .folder(let folder) = initFrom {
            // Checked before the weights load: the tokenizer and the declared sizes.
            let config = try BertConfig(path: (folder as NSString).appendingPathComponent("config.json"))
            try checkCompatible(student: config, tokenizer: try WordPieceTokenizer(folder: folder), studentFolder: folder,
                                teacher: teacher, teacherFolder: teacherFolder)
            if let layers, layers != config.layers {
                throw InvalidSetting("\(Setting.studentLayers) \(layers) disagrees with \(folder)/config.json (num_hidden_layers \(config.layers)); drop one of them")
            }
            return try Classifier.load(folder: folder, labels: teacher.labelNames, maxLength: teacher.maxLength, backend: backend, seed: seed)
        }
        let n = layers ?? t.config.layers / 2
        guard n >= 1, n <= t.config.layers else {
            throw InvalidSetting("\(Setting.studentLayers) \(n): must be between 1 and the teacher's \(t.config.layers) layers")
        }
        let source = try initFrom.teacherLayers(student: n, teacher: t.config.layers)
        guard let last = source.last, last < t.config.layers else {
            throw InvalidSetting("\(Setting.studentInit) \(initFrom.name) with \(n) layers needs teacher layer \(source.last.map { $0 + 1 } ?? 0) (1-based), "
                                 + "but the teacher has \(t.config.layers); use fewer \(Setting.studentLayers) or \(Setting.studentInit) uniform")
        }
        var config = t.config
        config.layers = n
        let student = try BertModel(config: config, labels: t.labels, backend: backend)
        for entry in student.layout.entries {
            var name = entry.name
            if name.hasPrefix("encoder.layer.") {
                let rest = name.dropFirst("encoder.layer.".count)
                let dot = rest.firstIndex(of: ".")!
                name = "encoder.layer.\(source[Int(rest[..<dot])!])" + rest[dot...]
            }
            backend.copy(student.w(entry.name), t.w(name))
        }
        return Classifier(model: student, tokenizer: teacher.tokenizer, labelNames: teacher.labelNames, maxLength: teacher.maxLength)
    }

    /// A student checkpoint must read the same tokens as its teacher, be of its family and no wider.
    static func checkCompatible(student s: BertConfig, tokenizer: WordPieceTokenizer, studentFolder: String,
                                teacher: Classifier, teacherFolder: String) throws {
        if tokenizer.tokens != teacher.tokenizer.tokens {
            let first = zip(tokenizer.tokens, teacher.tokenizer.tokens).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            throw DataError("\(studentFolder)/vocab.txt differs from the teacher's \(teacherFolder)/vocab.txt "
                            + "(\(tokenizer.tokens.count) vs \(teacher.tokenizer.tokens.count) tokens"
                            + (first.map { ", first at id \($0)" } ?? "") + "): a student must use its teacher's tokenizer")
        }
        let t = teacher.model.config
        if s.family != t.family {
            throw DataError("\(studentFolder): a \(s.family.rawValue) student cannot learn from a \(t.family.rawValue) teacher")
        }
        if s.hiddenSize > t.hiddenSize {
            throw DataError("\(studentFolder)/config.json: hidden_size \(s.hiddenSize) is wider than the teacher's \(t.hiddenSize); a student must not be wider than its teacher")
        }
    }
}
