// WordPiece tokenizer identical to HF's uncased BERT tokenizer (the tokenizers-backed one that
// transformers' AutoTokenizer loads): normalise (clean text, space out CJK, strip accents,
// lower-case), split on whitespace and punctuation, greedy longest-match WordPiece, then
// [CLS] A [SEP] (B [SEP]) with token types, longest-first truncation and padding.
import Foundation

public struct Encoding: Equatable, Sendable {
    public var ids: [Int32]
    public var typeIds: [Int32]
    public var attentionMask: [Int32]
    /// Tokens of the text were cut to fit the maximum length.
    public var truncated: Bool
    public init(ids: [Int32], typeIds: [Int32], attentionMask: [Int32], truncated: Bool = false) {
        self.ids = ids; self.typeIds = typeIds; self.attentionMask = attentionMask; self.truncated = truncated
    }

    /// One text's (or pair's) ids as a model without token types reads them: type 0, every
    /// position attended.
    public init(ids: [Int32], truncated: Bool = false) {
        self.init(ids: ids, typeIds: Array(repeating: 0, count: ids.count), attentionMask: Array(repeating: 1, count: ids.count),
                  truncated: truncated)
    }
}

public struct WordPieceTokenizer: Sendable {
    public let vocabulary: [String: Int32]
    public let tokens: [String]           // id → token
    public let lowercase: Bool
    public let stripAccents: Bool
    public let splitCJK: Bool
    public let maxCharactersPerWord = 100
    public let cls, sep, pad, unk: Int32
    /// MPNet/RoBERTa-style pairs: <s> a </s></s> b </s>, token types all 0.
    public let doubleSeparator: Bool
    private let specials: [(text: String, id: Int32)]

    /// The special tokens' strings: BERT's [CLS] [SEP] [PAD] [UNK] [MASK] unless
    /// tokenizer_config.json names others (MPNet: <s> </s> <pad> [UNK] <mask>).
    public struct Specials: Sendable {
        public var cls = "[CLS]", sep = "[SEP]", pad = "[PAD]", unk = "[UNK]", mask = "[MASK]"
        public init() {}
        var all: [String] { [cls, sep, pad, unk, mask] }
    }

    /// Loads `vocab.txt` (one token per line; the line number is the id) and, when present,
    /// the options of `tokenizer_config.json` in the same folder.
    public init(folder: String) throws {
        let vocabPath = (folder as NSString).appendingPathComponent("vocab.txt")
        guard let text = try? String(contentsOfFile: vocabPath, encoding: .utf8) else {
            throw CheckpointError("\(vocabPath): cannot read the WordPiece vocabulary (is this a BERT model folder?)")
        }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        var options: [String: Any] = [:]
        let configPath = (folder as NSString).appendingPathComponent("tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw CheckpointError("\(configPath): not a JSON object")
            }
            options = object
        }
        let lowercase = options["do_lower_case"] as? Bool ?? true
        func special(_ key: String) -> String? {   // "<s>" or {"content": "<s>", …}
            (options[key] as? String) ?? ((options[key] as? [String: Any])?["content"] as? String)
        }
        var specials = Specials()
        specials.cls = special("cls_token") ?? specials.cls; specials.sep = special("sep_token") ?? specials.sep
        specials.pad = special("pad_token") ?? specials.pad; specials.unk = special("unk_token") ?? specials.unk
        specials.mask = special("mask_token") ?? specials.mask
        let tokenizerClass = options["tokenizer_class"] as? String ?? ""
        try self.init(tokens: lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }, lowercase: lowercase,
                      stripAccents: options["strip_accents"] as? Bool ?? lowercase,
                      splitCJK: options["tokenize_chinese_chars"] as? Bool ?? true, specials: specials,
                      doubleSeparator: tokenizerClass.hasPrefix("MPNet"), source: vocabPath)
    }

    public init(tokens: [String], lowercase: Bool = true, stripAccents: Bool = true, splitCJK: Bool = true,
                specials names: Specials = Specials(), doubleSeparator: Bool = false, source: String = "vocabulary") throws {
        var vocabulary: [String: Int32] = [:]
        for (id, token) in tokens.enumerated() where vocabulary[token] == nil { vocabulary[token] = Int32(id) }
        func id(_ token: String) throws -> Int32 {
            guard let id = vocabulary[token] else { throw CheckpointError("\(source): no \(token) token") }
            return id
        }
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.splitCJK = splitCJK
        cls = try id(names.cls); sep = try id(names.sep); pad = try id(names.pad); unk = try id(names.unk)
        self.doubleSeparator = doubleSeparator
        specials = names.all.compactMap { t in vocabulary[t].map { (t, $0) } }
    }

    // MARK: encoding

    /// The WordPiece ids of `text`, without [CLS]/[SEP]. Special-token strings in the raw text
    /// ("[SEP]", …) become their ids, as in HF.
    public func tokenize(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            var next: (range: Range<Substring.Index>, id: Int32)?
            for special in specials {
                if let r = rest.range(of: special.text), next == nil || r.lowerBound < next!.range.lowerBound { next = (r, special.id) }
            }
            let plain = next.map { rest[..<$0.range.lowerBound] } ?? rest
            for word in preTokenize(normalize(String(plain))) { ids += wordPiece(word) }
            guard let next else { break }
            ids.append(next.id)
            rest = rest[next.range.upperBound...]
        }
        return ids
    }

    /// [CLS] a [SEP] (b [SEP]), truncated longest-first to `maxLength` tokens in all.
    public func encode(_ a: String, _ b: String? = nil, maxLength: Int? = nil) -> Encoding {
        var first = tokenize(a)
        var second = b.map(tokenize)
        let whole = first.count + (second?.count ?? 0)
        if let maxLength {
            let budget = max(0, maxLength - (second == nil ? 2 : doubleSeparator ? 4 : 3))
            if var pair = second {
                let (keepFirst, keepSecond) = Self.longestFirst(first.count, pair.count, budget: budget)
                first = Array(first.prefix(keepFirst))
                pair = Array(pair.prefix(keepSecond))
                second = pair
            } else {
                first = Array(first.prefix(budget))
            }
        }
        var ids = [cls] + first + [sep]
        var types = [Int32](repeating: 0, count: ids.count)
        if let second {
            let middle: [Int32] = doubleSeparator ? [sep] : []
            ids += middle + second + [sep]
            types += [Int32](repeating: doubleSeparator ? 0 : 1, count: middle.count + second.count + 1)
        }
        return Encoding(ids: ids, typeIds: types, attentionMask: [Int32](repeating: 1, count: ids.count),
                        truncated: first.count + (second?.count ?? 0) < whole)
    }

    /// How many tokens of each sequence a pair keeps under `budget`, as HF's longest-first
    /// truncation: the shorter sequence stays whole when it fits in half, otherwise both get half.
    static func longestFirst(_ a: Int, _ b: Int, budget: Int) -> (Int, Int) {
        guard a + b > budget else { return (a, b) }
        var (n1, n2) = (a, b)
        let swapped = n1 > n2
        if swapped { swap(&n1, &n2) }
        n2 = n1 > budget ? n1 : max(n1, budget - n1)
        if n1 + n2 > budget {
            n1 = budget / 2
            n2 = n1 + budget % 2
        }
        if swapped { swap(&n1, &n2) }
        return (min(a, n1), min(b, n2))
    }

    /// Pads a batch to its longest sequence (dynamic padding) or to `length`.
    public func pad(_ batch: [Encoding], to length: Int? = nil) -> [Encoding] {
        let target = length ?? batch.map(\.ids.count).max() ?? 0
        return batch.map { e in
            let extra = max(0, target - e.ids.count)
            return Encoding(ids: e.ids + [Int32](repeating: pad, count: extra),
                            typeIds: e.typeIds + [Int32](repeating: 0, count: extra),
                            attentionMask: e.attentionMask + [Int32](repeating: 0, count: extra), truncated: e.truncated)
        }
    }

    // MARK: the steps

    /// Clean (drop NUL, U+FFFD and control/format characters; whitespace → space), space out CJK
    /// ideographs, strip accents (NFD, drop non-spacing marks), lower-case — in that order.
    func normalize(_ text: String) -> String {
        var cleaned = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
            if Self.isWhitespace(s) { cleaned.append(" "); continue }
            if splitCJK && Self.isCJK(s) {
                cleaned.append(" "); cleaned.append(s); cleaned.append(" ")
                continue
            }
            cleaned.append(s)
        }
        var result = String(cleaned)
        if stripAccents {
            var stripped = String.UnicodeScalarView()
            for s in result.decomposedStringWithCanonicalMapping.unicodeScalars where s.properties.generalCategory != .nonspacingMark {
                stripped.append(s)
            }
            result = String(stripped)
        }
        if lowercase {
            var lowered = String.UnicodeScalarView()
            for s in result.unicodeScalars {   // per character, no context rules (as HF)
                if s.isASCII { lowered.append(Unicode.Scalar(UInt8(ascii: s) | (s.value >= 65 && s.value <= 90 ? 0x20 : 0))) }
                else { lowered.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars) }
            }
            result = String(lowered)
        }
        return result
    }

    /// Splits on whitespace and makes every punctuation character a word of its own.
    func preTokenize(_ text: String) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for s in text.unicodeScalars {
            if s.properties.isWhitespace {
                if !current.isEmpty { words.append(current); current = [] }
            } else if Self.isPunctuation(s) {
                if !current.isEmpty { words.append(current); current = [] }
                words.append([s])
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// Greedy longest-match-first; a word with no match, or longer than 100 characters, is [UNK].
    func wordPiece(_ word: [Unicode.Scalar]) -> [Int32] {
        guard word.count <= maxCharactersPerWord else { return [unk] }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                var piece = start > 0 ? "##" : ""
                piece.unicodeScalars.append(contentsOf: word[start..<end])
                if let id = vocabulary[piece] { found = id; break }
                end -= 1
            }
            guard let found else { return [unk] }
            pieces.append(found)
            start = end
        }
        return pieces
    }

    // MARK: character classes

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isCJK(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }
}
