// HF tokenizers' tokenizer.json for byte-level BPE: the model's vocab and merges (merges as
// "a b" strings or [a, b] pairs), every added token (cut out of the text first, as HF does; their
// ids may lie past the vocab, as Qwen2's), the BPE model's ignore_merges (Llama 3), and the
// normalizer and pre-tokenizer read as one of the pipelines Retort splits by hand:
//   ByteLevel(use_regex)                                        GPT-2
//   Sequence[Digits(individual_digits), ByteLevel(use_regex)]   SmolLM2
//   Sequence[Split(Llama 3's or Qwen2's regex), ByteLevel]      Llama 3, Qwen2 (Qwen2: NFC first)
// Anything else — another regex, a prefix space, byte_fallback (SentencePiece-style BPE) — is
// refused in one line naming what the file has.
import Foundation

extension ByteLevelBPE {
    public convenience init(tokenizerJSON path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError("\(path): not found") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError("\(path): not a JSON object (HF tokenizers' tokenizer.json)")
        }
        guard let model = root["model"] as? [String: Any], let type = model["type"] as? String else {
            throw CheckpointError("\(path): no model.type")
        }
        guard type == "BPE" else { throw CheckpointError("\(path): model.type is \(type); Retort reads byte-level BPE tokenizers") }
        if model["byte_fallback"] as? Bool == true {
            throw CheckpointError("\(path): a BPE with byte_fallback (SentencePiece-style, as Llama 2's and Mistral's) is not byte-level BPE")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = model[key] as? String, !affix.isEmpty { throw CheckpointError("\(path): model.\(key) '\(affix)' is not supported") }
        }
        guard let vocab = model["vocab"] as? [String: Any], !vocab.isEmpty else { throw CheckpointError("\(path): no model.vocab") }
        var byId: [Int: String] = [:]
        func place(_ token: String, _ value: Any?, _ what: String) throws {
            guard let id = (value as? NSNumber)?.intValue, id >= 0 else { throw CheckpointError("\(path): \(what) '\(token)' has no id") }
            if let other = byId[id], other != token {
                throw CheckpointError("\(path): id \(id) is both '\(other)' and '\(token)'")
            }
            byId[id] = token
        }
        for (token, id) in vocab { try place(token, id, "token") }
        var added: [String] = []
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = entry["content"] as? String, !content.isEmpty else { continue }
            for flag in ["lstrip", "rstrip", "single_word"] where entry[flag] as? Bool == true {
                throw CheckpointError("\(path): added token '\(content)' has \(flag) set, which Retort does not apply")
            }
            try place(content, entry["id"], "added token")
            added.append(content)
        }
        var tokens = [String](repeating: "", count: (byId.keys.max() ?? -1) + 1)
        for (id, token) in byId { tokens[id] = token }
        guard let list = model["merges"] as? [Any], !list.isEmpty else { throw CheckpointError("\(path): no model.merges") }
        let merges = try list.enumerated().map { rank, merge -> String in
            if let line = merge as? String { return line }
            if let pair = merge as? [String], pair.count == 2 { return pair[0] + " " + pair[1] }
            throw CheckpointError("\(path): merge \(rank + 1) is neither \"a b\" nor [a, b]")
        }
        let (split, nfc) = try Self.pipeline(normalizer: root["normalizer"], preTokenizer: root["pre_tokenizer"], path: path)
        try self.init(tokens: tokens, merges: merges, special: added, split: split, nfc: nfc,
                      ignoreMerges: model["ignore_merges"] as? Bool ?? false, source: path)
        prefix = try Self.prefix(postProcessor: root["post_processor"], path: path)
    }

    /// The special tokens a TemplateProcessing post-processor (alone, or in a Sequence beside
    /// ByteLevel's) puts before a single text: the ids of its "single" template's SpecialTokens
    /// ahead of the sequence. A template that puts tokens after the text is refused.
    static func prefix(postProcessor: Any?, path: String) throws -> [Int32] {
        guard let processor = postProcessor as? [String: Any] else { return [] }
        let steps = processor["type"] as? String == "Sequence" ? processor["processors"] as? [[String: Any]] ?? [] : [processor]
        guard let template = steps.first(where: { $0["type"] as? String == "TemplateProcessing" }),
              let single = template["single"] as? [[String: Any]] else { return [] }
        let specials = template["special_tokens"] as? [String: Any] ?? [:]
        var prefix: [Int32] = [], seenText = false
        for item in single {
            if item["Sequence"] != nil { seenText = true; continue }
            guard let name = (item["SpecialToken"] as? [String: Any])?["id"] as? String,
                  let ids = (specials[name] as? [String: Any])?["ids"] as? [NSNumber] else {
                throw CheckpointError("\(path): post_processor's single template has an item Retort does not read")
            }
            guard !seenText else { throw CheckpointError("\(path): post_processor adds '\(name)' after the text; Retort adds tokens before it only") }
            prefix += ids.map { Int32($0.intValue) }
        }
        return prefix
    }

    /// The split and normalisation a tokenizer.json's normalizer and pre_tokenizer describe.
    static func pipeline(normalizer: Any?, preTokenizer: Any?, path: String) throws -> (PreTokenizer, nfc: Bool) {
        func describe(_ value: Any?) -> String {
            guard let value, !(value is NSNull), let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else {
                return "none"
            }
            let text = String(decoding: data, as: UTF8.self)
            return text.count > 160 ? String(text.prefix(160)) + "…" : text
        }
        var nfc = false
        if let n = normalizer as? [String: Any] {
            guard n["type"] as? String == "NFC" else {
                throw CheckpointError("\(path): normalizer \(describe(n)) is not supported (none or NFC)")
            }
            nfc = true
        }
        func byteLevel(_ step: [String: Any]?, regex: Bool) -> Bool {
            guard let step, step["type"] as? String == "ByteLevel" else { return false }
            return (step["use_regex"] as? Bool ?? true) == regex && !(step["add_prefix_space"] as? Bool ?? false)
        }
        let pre = preTokenizer as? [String: Any]
        if byteLevel(pre, regex: true) { return (.gpt2, nfc) }
        if pre?["type"] as? String == "Sequence", let steps = pre?["pretokenizers"] as? [[String: Any]], steps.count == 2 {
            if steps[0]["type"] as? String == "Digits", steps[0]["individual_digits"] as? Bool == true, byteLevel(steps[1], regex: true) {
                return (.smollm, nfc)
            }
            if steps[0]["type"] as? String == "Split", let pattern = (steps[0]["pattern"] as? [String: Any])?["Regex"] as? String,
               (steps[0]["behavior"] as? String)?.lowercased() == "isolated", !(steps[0]["invert"] as? Bool ?? false),
               byteLevel(steps[1], regex: false), let kind = PreTokenizer.regexes.first(where: { $0.value == pattern })?.key {
                return (kind, nfc)
            }
        }
        throw CheckpointError("\(path): pre-tokenizer \(describe(preTokenizer)) is not one Retort splits by "
                              + "(GPT-2's, SmolLM2's, Llama 3's or Qwen2's byte-level BPE)")
    }
}

extension ByteLevelBPE {
    /// This tokenizer as HF tokenizers' tokenizer.json (what `init(tokenizerJSON:)` reads back):
    /// every token in the model's vocab, the special tokens also as added tokens, the merges as
    /// pairs, the normalizer and pre-tokenizer of its split — so transformers tokenizes a saved
    /// folder as Retort does (from vocab.json + merges.txt alone it would split as GPT-2).
    public func tokenizerJSON() -> [String: Any] {
        func byteLevel(regex: Bool) -> [String: Any] {
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
        }
        let pre: [String: Any]
        switch split {
        case .gpt2: pre = byteLevel(regex: true)
        case .smollm:
            pre = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)]]
        case .llama3, .qwen2:
            pre = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": PreTokenizer.regexes[split]!], "behavior": "Isolated", "invert": false],
                byteLevel(regex: false)]]
        }
        var vocab: [String: Int] = [:]
        for (id, token) in tokens.enumerated() where !token.isEmpty && vocab[token] == nil { vocab[token] = id }
        let added = special.sorted { $0.id < $1.id }.map { s -> [String: Any] in
            ["id": Int(s.id), "content": String(String.UnicodeScalarView(s.text)), "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true]
        }
        let pairs = merges.sorted { $0.value.rank < $1.value.rank }.map { key, _ in [tokens[Int(key >> 32)], tokens[Int(key & 0xFFFF_FFFF)]] }
        // The prefix (a BOS) as a template before each text, as Llama 3's tokenizer.json has it.
        var post: Any = NSNull()
        if !prefix.isEmpty {
            func items(_ typeId: Int) -> [[String: Any]] { prefix.map { ["SpecialToken": ["id": tokens[Int($0)], "type_id": typeId]] } }
            post = ["type": "TemplateProcessing",
                    "single": items(0) + [["Sequence": ["id": "A", "type_id": 0]]],
                    "pair": items(0) + [["Sequence": ["id": "A", "type_id": 0]]] + items(1) + [["Sequence": ["id": "B", "type_id": 1]]],
                    "special_tokens": Dictionary(prefix.map { (tokens[Int($0)], ["id": tokens[Int($0)], "ids": [Int($0)], "tokens": [tokens[Int($0)]]]) },
                                                 uniquingKeysWith: { first, _ in first })]
        }
        return ["version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
                "normalizer": nfc ? ["type": "NFC"] : NSNull(), "pre_tokenizer": pre, "post_processor": post,
                "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
                "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                          "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
                          "vocab": vocab, "merges": pairs]]
    }
}
