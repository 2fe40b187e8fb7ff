// Byte-level BPE, the tokenizer of GPT-2, SmolLM2, Llama 3 and Qwen2 (HF tokenizers' ByteLevel
// pre-tokenizer + BPE model):
//   1. special and added tokens (<|endoftext|>, <|im_start|>) are cut out of the text first,
//      matched exactly; the rest is NFC-normalised where the tokenizer says so (Qwen2);
//   2. the pre-tokenizer cuts it into pieces (PreTokenizers.swift: GPT-2's pattern, SmolLM2's
//      digits apart, Llama 3's or Qwen2's pattern);
//   3. each piece's UTF-8 bytes become GPT-2's 256 printable stand-in characters;
//   4. a piece that is a token of its own is that token when the model ignores merges (Llama 3);
//   5. otherwise merges apply by rank — the lowest-ranked adjacent pair first, leftmost among
//      equals — until none applies; the symbols are the ids.
// Decoding maps the stand-ins back to bytes (invalid UTF-8 becomes U+FFFD, as HF's decode).
import Foundation

public final class ByteLevelBPE: @unchecked Sendable {
    /// id → token (stand-in characters).
    public let tokens: [String]
    let ids: [String: Int32]
    /// (left id, right id) → (rank, merged id).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Special tokens, longest first, and the ids of the 256 byte stand-ins (nil: a byte the
    /// vocabulary lacks — SmolLM2's lacks some control bytes — is dropped, as HF's BPE without an
    /// unknown token does).
    let special: [(text: [Unicode.Scalar], id: Int32)]
    /// Indices into `special` (in its order) by first scalar: at each position of a text only
    /// the special tokens that start with its scalar are tried (Llama 3 has 256).
    let specialStarts: [Unicode.Scalar: [Int]]
    let byteIds: [Int32?]
    /// How text is cut into pieces.
    public let split: PreTokenizer
    /// NFC-normalise ordinary text first (Qwen2's normalizer).
    let nfc: Bool
    /// A piece that is in the vocabulary is that token, merges or not (Llama 3's BPE model).
    let ignoreMerges: Bool
    /// The special tokens HF's tokenizer puts before a text it encodes as a model's input (a
    /// post-processor's or add_bos_token's BOS: Llama 3's <|begin_of_text|>; none for GPT-2 and
    /// SmolLM2). `encodeAsInput` adds them; `encode` does not (a chat template's text has its own).
    public internal(set) var prefix: [Int32] = []
    private var cache: [String: [Int32]] = [:]
    private let lock = NSLock()

    /// GPT-2's byte → stand-in character: printable Latin-1 bytes stand for themselves, the other
    /// 68 take the code points from 256 on, in byte order.
    static let byteScalars: [Unicode.Scalar] = {
        let printable = Array(33...126) + Array(161...172) + Array(174...255)
        var map = [Unicode.Scalar](repeating: " ", count: 256), next = 256
        for b in 0..<256 {
            if printable.contains(b) { map[b] = Unicode.Scalar(UInt32(b))! } else { map[b] = Unicode.Scalar(UInt32(next))!; next += 1 }
        }
        return map
    }()
    static let scalarBytes: [UInt32: UInt8] = Dictionary(uniqueKeysWithValues: byteScalars.enumerated().map { ($1.value, UInt8($0)) })

    /// `tokens` by id, merges as "left right" in rank order, special tokens by text.
    public init(tokens: [String], merges mergeLines: [String], special: [String], split: PreTokenizer = .gpt2, nfc: Bool = false,
                ignoreMerges: Bool = false, source: String) throws {
        self.tokens = tokens
        (self.split, self.nfc, self.ignoreMerges) = (split, nfc, ignoreMerges)
        var ids: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        for (rank, line) in mergeLines.enumerated() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let left = ids[String(parts[0])], let right = ids[String(parts[1])],
                  let merged = ids[String(parts[0]) + String(parts[1])] else {
                throw CheckpointError("\(source): merge \(rank + 1) '\(line)' is not two tokens of the vocabulary whose join is one too")
            }
            let key = UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))
            if merges[key] == nil { merges[key] = (Int32(rank), merged) }
        }
        self.merges = merges
        byteIds = Self.byteScalars.map { ids[String(Character($0))] }
        let known = byteIds.compactMap { $0 }.count
        guard known >= 192 else {
            throw CheckpointError("\(source): the vocabulary has \(known) of the 256 byte tokens (not a byte-level BPE vocabulary)")
        }
        let specialTokens = try special.map { text in
            guard let id = ids[text] else { throw CheckpointError("\(source): special token '\(text)' is not in the vocabulary") }
            return (text: Array(text.unicodeScalars), id: id)
        }.sorted { $0.text.count > $1.text.count }
        self.special = specialTokens
        self.specialStarts = Dictionary(grouping: specialTokens.indices.filter { !specialTokens[$0].text.isEmpty },
                                        by: { specialTokens[$0].text[0] })
    }

    /// The merges as "left right" lines in rank order (merges.txt without its header).
    public var mergeLines: [String] {
        merges.sorted { $0.value.rank < $1.value.rank }.map { key, _ in tokens[Int(key >> 32)] + " " + tokens[Int(key & 0xFFFF_FFFF)] }
    }
    /// The special tokens' texts.
    public var specialTokens: [String] { special.map { String(String.UnicodeScalarView($0.text)) } }

    /// A folder with GPT-2's vocab.json and merges.txt; special tokens: <|endoftext|> when the
    /// vocabulary has it (GPT-2's one special token), and those a Retort-written
    /// tokenizer_config.json lists ("retort_special_tokens", with "retort_pre_tokenizer": a
    /// GGUF's tokenizer saved as files) or marks special in transformers' added_tokens_decoder.
    public convenience init(folder: String) throws {
        let vocabPath = folder + "/vocab.json", mergesPath = folder + "/merges.txt"
        guard let data = FileManager.default.contents(atPath: vocabPath) else {
            throw CheckpointError("\(vocabPath): not found (a byte-level BPE tokenizer needs vocab.json and merges.txt)")
        }
        guard let table = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError("\(vocabPath): not a JSON object of token → id")
        }
        var tokens = [String](repeating: "", count: table.count)
        for (token, value) in table {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < table.count, tokens[id].isEmpty else {
                throw CheckpointError("\(vocabPath): token '\(token)' has id \(value), not a unique id below \(table.count)")
            }
            tokens[id] = token
        }
        guard let text = try? String(contentsOfFile: mergesPath, encoding: .utf8) else {
            throw CheckpointError("\(mergesPath): not found or not UTF-8 (a byte-level BPE tokenizer needs its merges)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map { String($0.hasSuffix("\r") ? $0.dropLast() : $0) }
            .filter { !$0.hasPrefix("#version") }
        guard !lines.isEmpty else { throw CheckpointError("\(mergesPath): no merges") }
        let retort = (try? JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: folder + "/tokenizer_config.json") ?? Data()))
            as? [String: Any] ?? [:]
        var special = (retort["retort_special_tokens"] as? [String]) ?? (table["<|endoftext|>"] == nil ? [] : ["<|endoftext|>"])
        // transformers' added special tokens (<|im_start|>, … in SmolLM2's and Qwen2's folders).
        for case let entry as [String: Any] in (retort["added_tokens_decoder"] as? [String: Any] ?? [:]).values
        where entry["special"] as? Bool == true {
            if let content = entry["content"] as? String, table[content] != nil, !special.contains(content) { special.append(content) }
        }
        let named = retort["retort_pre_tokenizer"] as? String
        guard let split = PreTokenizer(rawValue: named ?? "gpt2") else {
            throw CheckpointError("\(folder)/tokenizer_config.json: retort_pre_tokenizer '\(named!)' is not one of "
                                  + PreTokenizer.allCases.map(\.rawValue).joined(separator: ", "))
        }
        try self.init(tokens: tokens, merges: lines, special: special, split: split, nfc: retort["retort_nfc"] as? Bool ?? false,
                      ignoreMerges: retort["retort_ignore_merges"] as? Bool ?? false, source: folder)
        // Llama-style tokenizer_config.json: add_bos_token with its bos_token (a string or {"content": …}).
        if retort["add_bos_token"] as? Bool == true,
           let bos = retort["bos_token"] as? String ?? (retort["bos_token"] as? [String: Any])?["content"] as? String {
            guard let id = ids[bos] else { throw CheckpointError("\(folder)/tokenizer_config.json: bos_token '\(bos)' is not in the vocabulary") }
            prefix = [id]
        }
    }

    /// The split, normalisation and merge rule of llama.cpp's tokenizer.ggml.pre names, as the
    /// model's original tokenizer.json applies them: Llama 3's BPE ignores merges for a piece
    /// that is a token, Qwen2's normalises to NFC first. (transformers' GGUF reader sets neither;
    /// it gives the same ids wherever the text is NFC and merges reach the whole-piece token.)
    static let ggufPreTokenizers: [String: (split: PreTokenizer, nfc: Bool, ignoreMerges: Bool)] = [
        "gpt2": (.gpt2, false, false), "gpt-2": (.gpt2, false, false), "smollm": (.smollm, false, false),
        "llama3": (.llama3, false, true), "llama-v3": (.llama3, false, true), "llama-bpe": (.llama3, false, true),
        "qwen2": (.qwen2, true, false),
    ]

    /// The tokenizer a GGUF file embeds (tokenizer.ggml.*): byte-level BPE ("gpt2") with one of
    /// the pre-tokenizers of `ggufPreTokenizers`; control and user-defined tokens are special.
    public convenience init(gguf file: GGUFFile) throws {
        let name = (file.path as NSString).lastPathComponent
        guard let model = try file.string("tokenizer.ggml.model") else { throw CheckpointError("\(name): no tokenizer (tokenizer.ggml.model)") }
        guard model == "gpt2" else {
            throw CheckpointError("\(name): tokenizer.ggml.model is '\(model)'; Retort reads byte-level BPE ('gpt2') tokenizers")
        }
        let pre = try file.string("tokenizer.ggml.pre") ?? "gpt2"
        guard let rule = Self.ggufPreTokenizers[pre] else {
            throw CheckpointError("\(name): tokenizer.ggml.pre '\(pre)' is not supported (Retort reads "
                                  + Self.ggufPreTokenizers.keys.sorted().joined(separator: ", ") + ")")
        }
        guard let tokens = try file.strings("tokenizer.ggml.tokens"), !tokens.isEmpty else {
            throw CheckpointError("\(name): the tokenizer has no tokens (tokenizer.ggml.tokens)")
        }
        guard let merges = try file.strings("tokenizer.ggml.merges"), !merges.isEmpty else {
            throw CheckpointError("\(name): the tokenizer has no merges (tokenizer.ggml.merges)")
        }
        let types = try file.integers("tokenizer.ggml.token_type") ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw CheckpointError("\(name): tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        let special = zip(tokens, types).filter { $0.1 == 3 || $0.1 == 4 }.map(\.0)   // control, user-defined
        try self.init(tokens: tokens, merges: merges, special: special, split: rule.split, nfc: rule.nfc,
                      ignoreMerges: rule.ignoreMerges, source: name)
        if try file.bool("tokenizer.ggml.add_bos_token") == true, let bos = try file.integer("tokenizer.ggml.bos_token_id") {
            guard bos >= 0 && bos < tokens.count else { throw CheckpointError("\(name): tokenizer.ggml.bos_token_id \(bos) is not a token") }
            prefix = [Int32(bos)]
        }
    }

    // MARK: encoding

    /// `text` as the model's input: `prefix`, then its tokens (HF's tokenizer(text)).
    public func encodeAsInput(_ text: String) -> [Int32] { prefix + encode(text) }

    /// The tokens of `text` alone (HF's tokenizer(text, add_special_tokens=False)).
    public func encode(_ text: String) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int32] = [], start = 0, i = 0
        while i < scalars.count {
            if let candidates = specialStarts[scalars[i]],
               let s = candidates.lazy.map({ self.special[$0] }).first(where: { Self.matches($0.text, scalars, at: i) }) {
                encodeOrdinary(scalars[start..<i], into: &out)
                out.append(s.id)
                i += s.text.count
                start = i
            } else {
                i += 1
            }
        }
        encodeOrdinary(scalars[start..<scalars.count], into: &out)
        return out
    }

    /// As HF's tokenizer called with (a, b, truncation, max_length): each text's ids after the
    /// `prefix` (none for GPT-2 and SmolLM2; Llama 3's pair template is BOS a BOS b), truncated
    /// longest-first.
    public func encode(_ a: String, _ b: String?, maxLength: Int?) -> [Int32] { encoding(a, b, maxLength: maxLength).ids }

    /// encode(a, b, maxLength:) as an Encoding (types 0, every position attended) that says
    /// whether tokens were cut.
    public func encoding(_ a: String, _ b: String?, maxLength: Int?) -> Encoding {
        var first = encodeAsInput(a), second = b.map(encodeAsInput) ?? []
        let whole = first.count + second.count
        if let maxLength {
            let (keepFirst, keepSecond) = b == nil ? (min(first.count, maxLength), 0)
                : WordPieceTokenizer.longestFirst(first.count, second.count, budget: maxLength)
            first = Array(first.prefix(keepFirst))
            second = Array(second.prefix(keepSecond))
        }
        return Encoding(ids: first + second, truncated: first.count + second.count < whole)
    }

    private static func matches(_ pattern: [Unicode.Scalar], _ scalars: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + pattern.count <= scalars.count else { return false }
        for k in 0..<pattern.count where scalars[i + k] != pattern[k] { return false }
        return true
    }

    private func encodeOrdinary(_ scalars: ArraySlice<Unicode.Scalar>, into out: inout [Int32]) {
        guard !scalars.isEmpty else { return }
        var text = scalars
        if nfc {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars)
            text = ArraySlice(String(view).precomposedStringWithCanonicalMapping.unicodeScalars)
        }
        for piece in split.pieces(text) {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: piece)
            out += word(String(view))
        }
    }

    /// The ids of one pre-tokenized piece (cached).
    func word(_ piece: String) -> [Int32] {
        lock.lock()
        if let hit = cache[piece] { lock.unlock(); return hit }
        lock.unlock()
        var symbols = piece.utf8.compactMap { byteIds[Int($0)] }
        if ignoreMerges, symbols.count > 1,
           let whole = ids[String(String.UnicodeScalarView(piece.utf8.map { Self.byteScalars[Int($0)] }))] {
            symbols = [whole]
        }
        while symbols.count > 1 {
            var best: (rank: Int32, at: Int, merged: Int32)?
            for k in 0..<(symbols.count - 1) {
                if let m = merges[UInt64(UInt32(symbols[k])) << 32 | UInt64(UInt32(symbols[k + 1]))], m.rank < best?.rank ?? .max {
                    best = (m.rank, k, m.merged)
                }
            }
            guard let best else { break }
            // Merge every occurrence of that pair, left to right (what the lowest-rank-first queue does).
            let (left, right) = (symbols[best.at], symbols[best.at + 1])
            var merged: [Int32] = [], k = 0
            while k < symbols.count {
                if k + 1 < symbols.count, symbols[k] == left, symbols[k + 1] == right { merged.append(best.merged); k += 2 } else { merged.append(symbols[k]); k += 1 }
            }
            symbols = merged
        }
        lock.lock()
        if cache.count < 100_000 { cache[piece] = symbols }
        lock.unlock()
        return symbols
    }

    // MARK: decoding

    /// The text of `ids` (special tokens as their text; invalid UTF-8 → U+FFFD).
    public func decode(_ ids: [Int32]) -> String { String(decoding: ids.flatMap(bytes), as: UTF8.self) }

    /// The bytes token `id` stands for (a special token's text as UTF-8; none for an unknown id).
    /// A character may span tokens: streams join bytes before decoding them.
    public func bytes(_ id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < tokens.count else { return [] }
        var out: [UInt8] = []
        for scalar in tokens[Int(id)].unicodeScalars {
            if let b = Self.scalarBytes[scalar.value] { out.append(b) } else { out += Array(String(scalar).utf8) }
        }
        return out
    }
}
