// Cleaning a generated transfer set, each rule counted: empty or garbled output (the replacement
// character U+FFFD from bytes that are not UTF-8, control characters, or fewer than half the
// characters letters), texts too short or too long, exact copies (after lowercasing and
// collapsing spaces) of a training text or of a text already kept, and near-duplicates: a word
// n-gram Jaccard overlap at or above a threshold with a training text or a kept text. Candidates
// are found through an index of n-grams (an n-gram in more than `maxPosting` texts is too common
// to find candidates by), and their overlap is then counted exactly.
import Foundation

public struct TransferSetCleaner {
    public struct Rules: Sendable {
        public var minCharacters = 8
        public var maxCharacters = 400
        public var ngram = 3
        /// Jaccard overlap of word n-grams at or above which a text is a near-duplicate (> 1: off).
        public var nearDuplicate = 0.6
        public var maxPosting = 1000
        public init() {}
    }

    /// Why a text was dropped, in the order the rules apply.
    public enum Reason: String, CaseIterable, Sendable {
        case empty, garbled
        case tooShort = "too short", tooLong = "too long"
        case copiesTraining = "copies a training text", repeatsGenerated = "repeats a generated text"
        case nearTraining = "near-duplicate of a training text", nearGenerated = "near-duplicate of a generated text"
    }

    public let rules: Rules
    private var exact: [String: Bool] = [:]          // normalised text → from the training set
    private var grams: [[Int]] = []                   // each indexed text's n-gram ids
    private var fromTraining: [Bool] = []
    private var postings: [Int: [Int]] = [:]          // n-gram id → indexed texts
    private var gramIds: [String: Int] = [:]
    public private(set) var dropped: [Reason: Int] = [:]
    public private(set) var kept = 0

    /// Rules over these training texts (what generated texts must not copy).
    public init(rules: Rules = Rules(), training: [String]) {
        self.rules = rules
        for text in training {
            let n = Self.normalised(text)
            guard !n.isEmpty, exact[n.lowercased()] == nil else { continue }
            exact[n.lowercased()] = true
            index(n, training: true)
        }
    }

    /// Whitespace trimmed and collapsed to single spaces.
    public static func normalised(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// The cleaned text if it is kept (and remembered, so later copies of it are dropped), or nil
    /// with the reason counted.
    public mutating func admit(_ text: String) -> String? {
        let n = Self.normalised(text)
        if let reason = reject(n) {
            dropped[reason, default: 0] += 1
            return nil
        }
        exact[n.lowercased()] = false
        index(n, training: false)
        kept += 1
        return n
    }

    private func reject(_ n: String) -> Reason? {
        if n.isEmpty { return .empty }
        let scalars = n.unicodeScalars
        if scalars.contains(where: { $0 == "\u{FFFD}" || ($0.properties.generalCategory == .control) }) { return .garbled }
        let letters = n.filter(\.isLetter).count
        if letters * 2 < n.filter({ !$0.isWhitespace }).count { return .garbled }
        if n.count < rules.minCharacters { return .tooShort }
        if n.count > rules.maxCharacters { return .tooLong }
        if let training = exact[n.lowercased()] { return training ? .copiesTraining : .repeatsGenerated }
        guard rules.nearDuplicate <= 1 else { return nil }
        let mine = Set(ngrams(n).compactMap { gramIds[$0] })
        let total = Set(ngrams(n)).count
        var candidates = Set<Int>()
        for g in mine { candidates.formUnion(postings[g] ?? []) }
        var near: Reason?
        for doc in candidates.sorted() {   // the overlap counted exactly; a training text wins
            let common = grams[doc].reduce(0) { $0 + (mine.contains($1) ? 1 : 0) }, union = total + grams[doc].count - common
            guard union > 0, Double(common) / Double(union) >= rules.nearDuplicate else { continue }
            if fromTraining[doc] { return .nearTraining }
            near = .nearGenerated
        }
        return near
    }

    /// Lowercased word n-grams (a text of fewer words: its words as one gram).
    private func ngrams(_ n: String) -> [String] {
        let words = n.lowercased().split(separator: " ")
        guard words.count >= rules.ngram else { return [words.joined(separator: " ")] }
        return (0...(words.count - rules.ngram)).map { words[$0..<($0 + rules.ngram)].joined(separator: " ") }
    }

    private mutating func index(_ n: String, training: Bool) {
        let doc = grams.count
        var ids: [Int] = []
        for gram in Set(ngrams(n)) {
            let id = gramIds[gram] ?? gramIds.count
            gramIds[gram] = id
            ids.append(id)
            if postings[id, default: []].count < rules.maxPosting { postings[id, default: []].append(doc) }
        }
        grams.append(ids)
        fromTraining.append(training)
    }

    /// "kept 812 of 1000 generated texts; dropped: empty: 3, garbled: 41, …"
    public func summary(generated: Int) -> String {
        let parts = Reason.allCases.compactMap { r in dropped[r].map { "\(r.rawValue): \($0)" } }   // "copies a training text: 9"
        return "kept \(kept) of \(generated) generated texts" + (parts.isEmpty ? "" : "; dropped: " + parts.joined(separator: ", "))
    }
}
