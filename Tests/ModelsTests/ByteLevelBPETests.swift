// Byte-level BPE against HF (golden files made by Tests/Golden/make_bpe_ids.py): GPT-2's
// (transformers, from the vocab.json and merges.txt of scripts/fetch-assets gpt2) and SmolLM2's
// (HF tokenizers configured as SmolLM2's tokenizer, from the tokens and merges its GGUF embeds):
// every sentence of ../shared/data gives the same ids, and so do awkward strings (emoji, CJK,
// combining marks, control characters, runs of spaces, very long words, special tokens, digits);
// decoding gives HF's text back. tokenizer.json files (Tests/Golden/make_bpe_json.py: small BPEs
// HF tokenizers trained with GPT-2's, SmolLM2's, Llama 3's and Qwen2's pre-tokenizers) give HF's
// ids on every sentence (Llama 3, Qwen2) and on the awkward strings (all four). Bad tokenizer
// files are refused in one line.
import Foundation
@testable import Models
import XCTest

final class ByteLevelBPETests: XCTestCase {
    func tokenizer() throws -> ByteLevelBPE { try ByteLevelBPE(folder: try assetFolder("gpt2-tokenizer")) }

    func testEverySentenceOfTheSharedDataMatchesTransformers() throws {
        let tok = try tokenizer()
        try assertSharedDataMatchesGolden(prefix: "gpt2-", name: "gpt2 bpe", encode: tok.encode, token: { tok.tokens[Int($0)] })
    }

    func testAwkwardTextMatchesTransformers() throws {
        try assertCases("gpt2", try tokenizer())
    }

    func smolLM2() throws -> ByteLevelBPE {
        let path = try assetFolder("SmolLM2-135M-Instruct") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        return try ByteLevelBPE(gguf: try GGUFFile(path: path))
    }

    func testSmolLM2FromItsGGUFMatchesHFTokenizers() throws {
        let tok = try smolLM2()
        XCTAssertEqual(tok.encode("<|im_start|>user"), [1, 4093])
        try assertSharedDataMatchesGolden(prefix: "smollm2-", name: "smollm2 bpe", reference: "HF tokenizers", encode: tok.encode,
                                          token: { tok.tokens[Int($0)] })
        try assertCases("smollm2", tok)
    }

    func assertCases(_ name: String, _ tok: ByteLevelBPE) throws {
        let data = try Data(contentsOf: goldenFolder.appendingPathComponent("\(name)-cases.json"))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(object["cases"] as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 30)
        for c in cases {
            let text = c["text"] as! String, ids = (c["ids"] as! [Int]).map(Int32.init)
            XCTAssertEqual(tok.encode(text), ids, "ids of \(text.debugDescription)")
            XCTAssertEqual(tok.decode(ids), c["decoded"] as! String, "decoded \(text.debugDescription)")
        }
    }

    func testAGGUFTokenizerWithoutMergesIsRefused() throws {
        let file = try GGUFFile(path: golden.appendingPathComponent("gguf/no-merges.gguf").path)
        XCTAssertThrowsError(try ByteLevelBPE(gguf: file)) { error in
            XCTAssertEqual("\(error)", "no-merges.gguf: the tokenizer has no merges (tokenizer.ggml.merges)")
        }
        let types = try GGUFFile(path: golden.appendingPathComponent("gguf/types.gguf").path)
        XCTAssertThrowsError(try ByteLevelBPE(gguf: types)) { error in
            XCTAssertEqual("\(error)", "types.gguf: no tokenizer (tokenizer.ggml.model)")
        }
    }

    func jsonTokenizer(_ kind: String) throws -> ByteLevelBPE {
        try ByteLevelBPE(tokenizerJSON: golden.appendingPathComponent("tokenizer-json/\(kind).json").path)
    }

    func testTokenizerJSONSplitsAsHFTokenizers() throws {
        for kind in PreTokenizer.allCases {
            let tok = try jsonTokenizer(kind.rawValue)
            XCTAssertEqual(tok.split, kind)
            try assertCases("json-\(kind.rawValue)", tok)
        }
        for kind in ["llama3", "qwen2"] {
            let tok = try jsonTokenizer(kind)
            try assertSharedDataMatchesGolden(prefix: "json-\(kind)-", name: "\(kind) tokenizer.json", reference: "HF tokenizers",
                                              encode: tok.encode, token: { tok.tokens[Int($0)] })
        }
        // Qwen2's added tokens lie past its vocab; Llama 3's BPE ignores merges for a whole-token piece.
        let qwen2 = try jsonTokenizer("qwen2")
        XCTAssertEqual(qwen2.encode("<|im_start|>"), [1501])
        XCTAssertTrue(try jsonTokenizer("llama3").ignoreMerges)
    }

    /// GGUF pre-types "llama-bpe" and "qwen2" (Tests/Golden/make_gguf.py: the tokenizer.json
    /// fixtures' tokens and merges as llama.cpp embeds them) tokenise as the original tokenizer.json
    /// does in HF tokenizers: on the awkward strings and every sentence of ../shared/data.
    func testLlamaBPEAndQwen2GGUFTokenizersMatchTheirTokenizerJSON() throws {
        for (file, kind) in [("llama-bpe", PreTokenizer.llama3), ("qwen2", .qwen2)] {
            let tok = try ByteLevelBPE(gguf: try GGUFFile(path: golden.appendingPathComponent("gguf/\(file).gguf").path))
            XCTAssertEqual(tok.split, kind)
            XCTAssertEqual(tok.ignoreMerges, kind == .llama3, file)
            XCTAssertEqual(tok.nfc, kind == .qwen2, file)
            XCTAssertEqual(tok.prefix, [], "\(file): no add_bos_token true, no BOS (as transformers reads it)")
            try assertCases("json-\(kind.rawValue)", tok)
            try assertSharedDataMatchesGolden(prefix: "json-\(kind.rawValue)-", name: "\(file).gguf", reference: "HF tokenizers",
                                              encode: tok.encode, token: { tok.tokens[Int($0)] })
        }
        // An unknown pre-type (the value "qwen2" changed in place to "qwen9") is refused by name.
        var bytes = try Data(contentsOf: golden.appendingPathComponent("gguf/qwen2.gguf"))
        let at = try XCTUnwrap(bytes.range(of: Data("tokenizer.ggml.pre".utf8)))
        let value = try XCTUnwrap(bytes.range(of: Data("qwen2".utf8), in: at.upperBound..<bytes.count))
        bytes.replaceSubrange(value, with: Data("qwen9".utf8))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("retort-pre-\(UUID().uuidString).gguf")
        try bytes.write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        XCTAssertThrowsError(try ByteLevelBPE(gguf: try GGUFFile(path: path.path))) { error in
            XCTAssertEqual("\(error)", "\(path.lastPathComponent): tokenizer.ggml.pre 'qwen9' is not supported (Retort reads "
                           + "gpt-2, gpt2, llama-bpe, llama-v3, llama3, qwen2, smollm)")
        }
    }

    /// Llama 3's post-processor (ByteLevel, then a template putting <|begin_of_text|> before the
    /// text): the prefix HF's tokenizer(text) adds; a template with tokens after the text is refused.
    func testAPostProcessorsBOSComesBeforeTheInput() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-bos-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: golden.appendingPathComponent("tokenizer-json/llama3.json")))
                                 as? [String: Any])
        let bos: [String: Any] = ["SpecialToken": ["id": "<|im_start|>", "type_id": 0]], text: [String: Any] = ["Sequence": ["id": "A", "type_id": 0]]
        func write(_ single: [[String: Any]]) throws -> String {
            root["post_processor"] = ["type": "Sequence", "processors": [
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
                ["type": "TemplateProcessing", "single": single, "pair": single,
                 "special_tokens": ["<|im_start|>": ["id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]]]]]]
            let path = folder.appendingPathComponent("tokenizer.json").path
            try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
            return path
        }
        let tok = try ByteLevelBPE(tokenizerJSON: try write([bos, text]))
        XCTAssertEqual(tok.prefix, [1])
        XCTAssertEqual(tok.encodeAsInput("Hello there"), [1] + tok.encode("Hello there"))
        XCTAssertEqual(tok.encode("Hello", "there", maxLength: nil), [1] + tok.encode("Hello") + [1] + tok.encode("there"))
        XCTAssertThrowsError(try ByteLevelBPE(tokenizerJSON: try write([text, bos]))) { error in
            XCTAssertTrue("\(error)".hasSuffix("post_processor adds '<|im_start|>' after the text; Retort adds tokens before it only"), "\(error)")
        }
        XCTAssertEqual(try jsonTokenizer("gpt2").prefix, [], "no post-processor, no prefix")
        // Written back as Retort saves a tokenizer: the same template, read back the same.
        let saved = folder.appendingPathComponent("saved.json")
        try JSONSerialization.data(withJSONObject: tok.tokenizerJSON()).write(to: saved)
        let back = try ByteLevelBPE(tokenizerJSON: saved.path)
        XCTAssertEqual(back.prefix, [1])
        XCTAssertEqual(back.encode("Hello", "there", maxLength: 9), tok.encode("Hello", "there", maxLength: 9))
        // Whether tokens were cut: not at the whole length, yes one below it.
        let whole = tok.encoding("Hello", "there", maxLength: nil)
        XCTAssertEqual(whole.ids, tok.encode("Hello", "there", maxLength: nil))
        XCTAssertFalse(whole.truncated)
        XCTAssertFalse(tok.encoding("Hello", "there", maxLength: whole.ids.count).truncated)
        XCTAssertTrue(tok.encoding("Hello", "there", maxLength: whole.ids.count - 1).truncated)
        var flagged = root
        var added = flagged["added_tokens"] as! [[String: Any]]
        added[0]["lstrip"] = true
        flagged["added_tokens"] = added
        try JSONSerialization.data(withJSONObject: flagged).write(to: saved)
        XCTAssertThrowsError(try ByteLevelBPE(tokenizerJSON: saved.path)) { error in
            XCTAssertTrue("\(error)".hasSuffix("added token '<|endoftext|>' has lstrip set, which Retort does not apply"), "\(error)")
        }
    }

    /// Llama 3's contractions match case-insensitively as Oniguruma folds case: 'S, 'LL, and 'ſ
    /// (U+017F folds to s). The splits HF tokenizers' pre_tokenize_str gives.
    func testContractionsFoldCaseAsHFTokenizers() {
        func pieces(_ text: String) -> [String] {
            PreTokenizer.llama3.pieces(ArraySlice(Array(text.unicodeScalars))).map { String(String.UnicodeScalarView($0)) }
        }
        XCTAssertEqual(pieces("x'\u{017F}t"), ["x", "'\u{017F}", "t"])
        XCTAssertEqual(pieces("x'St"), ["x", "'S", "t"])
        XCTAssertEqual(pieces("X'LL go"), ["X", "'LL", " go"])
        XCTAssertEqual(pieces("it'\u{017F}"), ["it", "'\u{017F}"])
    }

    func testTokenizerJSONPipelinesRetortCannotSplitAreRefused() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-tokjson-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = golden.appendingPathComponent("tokenizer-json/llama3.json")
        func refusal(_ change: (inout [String: Any]) -> Void) throws -> String {
            var root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: source)) as? [String: Any])
            change(&root)
            let path = folder.appendingPathComponent("tokenizer.json")
            try JSONSerialization.data(withJSONObject: root).write(to: path)
            do { _ = try ByteLevelBPE(tokenizerJSON: path.path); return "(accepted)" } catch { return "\(error)" }
        }
        let path = folder.appendingPathComponent("tokenizer.json").path
        XCTAssertEqual(try refusal { _ in }, "(accepted)")
        XCTAssertTrue(try refusal { root in
            var pre = root["pre_tokenizer"] as! [String: Any], steps = pre["pretokenizers"] as! [[String: Any]]
            steps[0]["pattern"] = ["Regex": "\\s+|\\S+"]
            pre["pretokenizers"] = steps
            root["pre_tokenizer"] = pre
        }.hasPrefix("\(path): pre-tokenizer {\"pretokenizers\":[{\"behavior\":\"Isolated\""), "another regex")
        XCTAssertEqual(try refusal { root in root["normalizer"] = ["type": "NFKC"] },
                       "\(path): normalizer {\"type\":\"NFKC\"} is not supported (none or NFC)")
        XCTAssertEqual(try refusal { root in var m = root["model"] as! [String: Any]; m["byte_fallback"] = true; root["model"] = m },
                       "\(path): a BPE with byte_fallback (SentencePiece-style, as Llama 2's and Mistral's) is not byte-level BPE")
        XCTAssertEqual(try refusal { root in var m = root["model"] as! [String: Any]; m["type"] = "Unigram"; root["model"] = m },
                       "\(path): model.type is Unigram; Retort reads byte-level BPE tokenizers")
        XCTAssertEqual(try refusal { root in var m = root["model"] as! [String: Any]; m["merges"] = [1, 2]; root["model"] = m },
                       "\(path): merge 1 is neither \"a b\" nor [a, b]")
    }

    func testBadFilesAreRefusedInOneLine() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-bpe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func refusal(vocab: String?, merges: String?) -> String {
            for (name, text) in [("vocab.json", vocab), ("merges.txt", merges)] {
                let path = folder.appendingPathComponent(name)
                try? FileManager.default.removeItem(at: path)
                if let text { try? text.write(to: path, atomically: true, encoding: .utf8) }
            }
            do { _ = try ByteLevelBPE(folder: folder.path); return "(accepted)" } catch { return "\(error)" }
        }
        let bytes = (0..<256).map { "\"\(String(Character(ByteLevelBPE.byteScalars[$0])).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\": \($0)" }
        let vocab = "{" + (bytes + ["\"ab\": 256"]).joined(separator: ", ") + "}"
        XCTAssertEqual(refusal(vocab: vocab, merges: "#version: 0.2\na b\n"), "(accepted)")
        XCTAssertEqual(refusal(vocab: vocab, merges: nil),
                       "\(folder.path)/merges.txt: not found or not UTF-8 (a byte-level BPE tokenizer needs its merges)")
        XCTAssertEqual(refusal(vocab: vocab, merges: "#version: 0.2\n"), "\(folder.path)/merges.txt: no merges")
        XCTAssertEqual(refusal(vocab: vocab, merges: "a b\nb c\n"),
                       "\(folder.path): merge 2 'b c' is not two tokens of the vocabulary whose join is one too")
        XCTAssertEqual(refusal(vocab: "{\"a\": 0, \"b\": 1, \"ab\": 2}", merges: "a b\n"),
                       "\(folder.path): the vocabulary has 2 of the 256 byte tokens (not a byte-level BPE vocabulary)")
        XCTAssertEqual(refusal(vocab: "[1, 2]", merges: "a b\n"), "\(folder.path)/vocab.json: not a JSON object of token → id")
        XCTAssertEqual(refusal(vocab: nil, merges: "a b\n"),
                       "\(folder.path)/vocab.json: not found (a byte-level BPE tokenizer needs vocab.json and merges.txt)")
    }
}
