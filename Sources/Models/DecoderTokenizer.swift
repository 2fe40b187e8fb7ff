// What generation needs beside the weights: the tokenizer (the one a GGUF embeds, or a folder's
// tokenizer.json, else its vocab.json + merges.txt), the end-of-sequence tokens (config, generation_config.json, GGUF) and
// the chat template. Chat templates are Jinja programs; Retort renders the ChatML family
// (<|im_start|>role\ncontent<|im_end|>\n, SmolLM2, Qwen2) — including a template's default
// system message — and refuses others in one line rather than guessing.
import Foundation

public struct ChatTemplate: Sendable, Equatable {
    /// The system message the template adds when the conversation has none (nil: none).
    public let defaultSystem: String?

    /// The ChatML template in `source`, or nil when it is another kind. Its default system message
    /// is a whole system turn spelt as one string literal ('<|im_start|>system\n…<|im_end|>\n')
    /// in a template that looks at the first message's role: SmolLM2's and Qwen2's
    /// `messages[0]['role'] != 'system'`, Qwen2.5's else branch of `== 'system'`.
    public init?(jinja source: String) {
        guard source.contains("<|im_start|>"), source.contains("<|im_end|>"), source.contains("message['role']") || source.contains("message.role")
        else { return nil }
        let looksAtFirstRole = source.contains("messages[0]['role']") || source.contains("messages[0].role")
        defaultSystem = looksAtFirstRole ? Self.stringLiterals(source).lazy.compactMap(Self.systemMessage).first : nil
    }

    /// The text of a literal that is one whole system turn, else nil.
    static func systemMessage(_ literal: String) -> String? {
        let start = "<|im_start|>system\n"
        guard literal.hasPrefix(start), let end = literal.range(of: "<|im_end|>") else { return nil }
        let text = String(literal[literal.index(literal.startIndex, offsetBy: start.count)..<end.lowerBound])
        return text.isEmpty ? nil : text
    }

    /// The string literals inside the template's {{ … }} and {% … %} tags, in order, with Jinja's
    /// escapes (\n, \t, \r, \', \", \\) decoded.
    static func stringLiterals(_ source: String) -> [String] {
        let chars = Array(source)
        var out: [String] = [], i = 0, inTag = false
        while i < chars.count {
            let c = chars[i], next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
            if !inTag {
                inTag = c == "{" && (next == "{" || next == "%")
                i += inTag ? 2 : 1
                continue
            }
            if (c == "}" || c == "%") && next == "}" { inTag = false; i += 2; continue }
            guard c == "'" || c == "\"" else { i += 1; continue }
            var text = "", j = i + 1
            while j < chars.count && chars[j] != c {
                if chars[j] == "\\", j + 1 < chars.count {
                    let e = chars[j + 1]
                    text.append(e == "n" ? "\n" : e == "t" ? "\t" : e == "r" ? "\r" : e)
                    j += 2
                } else {
                    text.append(chars[j])
                    j += 1
                }
            }
            out.append(text)
            i = j + 1
        }
        return out
    }

    /// One user message (after `system`, or the template's default) and the assistant's turn opened.
    public func render(user: String, system: String? = nil) -> String {
        var text = ""
        if let system = system ?? defaultSystem { text += "<|im_start|>system\n\(system)<|im_end|>\n" }
        return text + "<|im_start|>user\n\(user)<|im_end|>\n<|im_start|>assistant\n"
    }
}

public struct DecoderTokenizer {
    public let bpe: ByteLevelBPE
    public let endTokens: Set<Int32>
    /// The model's chat template source (nil: it has none).
    public let chatTemplateSource: String?

    /// The tokenizer of the model at `path` (a .gguf file or an HF folder) and its end tokens.
    public init(model path: String, config: DecoderConfig) throws {
        var ends = Set(config.eosTokenIds.map { Int32($0) })
        if path.hasSuffix(".gguf") {
            let gguf = try GGUFFile(path: path)
            bpe = try ByteLevelBPE(gguf: gguf)
            chatTemplateSource = try gguf.string("tokenizer.chat_template")
        } else {
            if FileManager.default.fileExists(atPath: path + "/tokenizer.json") {
                bpe = try ByteLevelBPE(tokenizerJSON: path + "/tokenizer.json")
            } else {
                guard FileManager.default.fileExists(atPath: path + "/vocab.json") else {
                    throw CheckpointError("\(path): no tokenizer.json, nor vocab.json and merges.txt (Retort reads byte-level BPE "
                                          + "tokenizers from those, or from a .gguf)")
                }
                bpe = try ByteLevelBPE(folder: path)
            }
            let tokenizerConfig = (try? configObject(path + "/tokenizer_config.json")) ?? [:]
            chatTemplateSource = tokenizerConfig["chat_template"] as? String
            if let generation = try? configObject(path + "/generation_config.json") {
                if let n = generation["eos_token_id"] as? NSNumber { ends.insert(Int32(n.intValue)) }
                for n in generation["eos_token_id"] as? [NSNumber] ?? [] { ends.insert(Int32(n.intValue)) }
            }
        }
        endTokens = ends
    }

    /// The tokenizer files of a saved model: copied from an HF folder `source`, or — for a GGUF —
    /// written from it: tokenizer.json (transformers and Retort read it: SmolLM2's digits apart),
    /// vocab.json and merges.txt (read alone, with GPT-2's split), and a tokenizer_config.json
    /// that names the pre-tokenizer and special tokens for Retort and keeps the chat template.
    public func save(folder: String, source: String) throws {
        guard source.hasSuffix(".gguf") else {
            for file in ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
                let from = (source as NSString).appendingPathComponent(file), to = (folder as NSString).appendingPathComponent(file)
                guard from != to, let data = FileManager.default.contents(atPath: from) else { continue }
                try writeAtomically(data, to: to)
            }
            return
        }
        let vocabulary = Dictionary(bpe.tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        try writeAtomically(try JSONSerialization.data(withJSONObject: vocabulary, options: [.sortedKeys]), to: folder + "/vocab.json")
        try writeAtomically(Data((["#version: 0.2"] + bpe.mergeLines).joined(separator: "\n").appending("\n").utf8), to: folder + "/merges.txt")
        try writeAtomically(try JSONSerialization.data(withJSONObject: bpe.tokenizerJSON(), options: [.sortedKeys]), to: folder + "/tokenizer.json")
        var config: [String: Any] = ["retort_pre_tokenizer": bpe.split.rawValue, "retort_special_tokens": bpe.specialTokens,
                                     "tokenizer_class": "PreTrainedTokenizerFast", "add_prefix_space": false]
        if let chatTemplateSource { config["chat_template"] = chatTemplateSource }
        if let end = endTokens.min() { config["eos_token"] = bpe.tokens[Int(end)] }
        if let bos = bpe.prefix.first { (config["add_bos_token"], config["bos_token"]) = (true, bpe.tokens[Int(bos)]) }
        try writeAtomically(try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                            to: folder + "/tokenizer_config.json")
    }

    /// The chat template, or a one-line error naming what the model has.
    public func chatTemplate(model: String) throws -> ChatTemplate {
        guard let source = chatTemplateSource else { throw CheckpointError("\(model): the model has no chat template; drop --chat") }
        guard let template = ChatTemplate(jinja: source) else {
            throw CheckpointError("\(model): its chat template is not ChatML (<|im_start|>…), the family Retort renders; drop --chat and format the prompt yourself")
        }
        return template
    }
}
