// retort generate: text from a decoder (GPT-2, Llama family), streamed, or a file of prompts to JSONL.
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text with a decoder (GPT-2, SmolLM2/Llama/Qwen2): a prompt streamed to stdout, or a file of prompts to JSONL.",
        discussion: """
            The prompt runs through the model once (prefill), then one token at a time against a KV \
            cache. Greedy by default (the tokens transformers' greedy search picks); --temperature \
            above 0 samples (then --top-k and --top-p), reproducibly by --seed. Stops at the model's \
            end token, a --stop string, --max-new-tokens or the context length. Speed goes to stderr.

            Examples:
              retort generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat \\
                  "What is the boiling point of water?"
              retort generate --model M.gguf --input prompts.txt --output out.jsonl \\
                  --max-new-tokens 40

            Input files: .jsonl with a "prompt" field per line, .csv or .tsv with a "prompt" column \
            (--prompt-column names another), or any other text file with one prompt per line (blank \
            lines skipped); each output line names its prompt's line.
            """)

    @Option(name: .long, help: "A .gguf file or an HF folder (config.json, model.safetensors, tokenizer.json or vocab.json + merges.txt).") var model: String
    @Argument(help: "The prompt (or --prompt TEXT, or --input FILE; one that starts with '-' goes after --).") var text: String?
    @Option(name: .long, help: "The prompt (or use --input).") var prompt: String?
    @Option(name: .long, help: "Prompts: .jsonl with a \"prompt\" field, .csv/.tsv with a \"prompt\" column, or one prompt per line. Output is JSONL.") var input: String?
    @Option(name: .long, help: "With --input: the prompts' column of a .csv or .tsv (its header's name, or its 0-based index for a file without a header) or key of a .jsonl (default: prompt).") var promptColumn: String?
    @Option(name: .long, help: "With --input: write the JSONL here (default: standard output).") var output: String?
    @Flag(name: .long, help: "Replace an existing --output file (without it, one is refused).") var overwrite = false
    @Flag(name: .long, help: "Wrap each prompt in the model's chat template as a user message.") var chat = false
    @Option(name: .long, help: "With --chat: the system message (default: the template's own, if any).") var system: String?
    @Option(name: .long, help: "Tokens to generate at most.") var maxNewTokens = 128
    @Option(name: .long, help: "0 for greedy decoding; above 0 samples at this temperature.") var temperature: Double = 0
    @Option(name: .long, help: "Sample from the k most likely tokens only (0: all).") var topK = 0
    @Option(name: .long, help: "Sample from the smallest set of tokens whose probability reaches p.") var topP: Double = 1
    @Option(name: .long, help: "Sampling seed.") var seed: UInt64 = 0
    @Option(name: .long, help: "Stop when the text contains this string (repeatable; the string is not printed; \\n, \\t and \\\\ stand for a newline, a tab and a backslash).",
            transform: unescaped) var stop: [String] = []
    @Option(name: .customLong("batch-size"), help: "With --input: sequences generated at a time (a waiting prompt takes each slot that frees; default 8).")
    var batchSizeFlag: Int?
    var batchSize: Int { batchSizeFlag ?? 8 }
    @Flag(name: .long, help: "Quantize every linear layer and the LM head to int8 at load (weight-only: one scale per output channel, fp32 inputs; the token embeddings take their per-row int8 values too): about 4× fewer weight bytes a decoded token on the CPU, slightly different logits.")
    var int8 = false
    @OptionGroup var device: DeviceOptions

    func validate() throws {
        guard text == nil || prompt == nil else { throw ValidationError("give the prompt once: as an argument or with --prompt") }
        guard ((prompt ?? text) == nil) != (input == nil) else { throw ValidationError("give a prompt (an argument or --prompt) or --input, one of them") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        if !(temperature >= 0 && temperature.isFinite) { throw ValidationError("--temperature must be 0 (greedy) or a positive number") }
        if topK < 0 { throw ValidationError("--top-k must be 0 (off) or positive") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if temperature == 0, topK != 0 || topP != 1 || seed != 0 {   // greedy decoding samples nothing
            throw ValidationError("--\(topK != 0 ? "top-k" : topP != 1 ? "top-p" : "seed") goes with sampling: add --temperature (e.g. 0.8)")
        }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        try checkCounts([("--max-new-tokens", maxNewTokens), ("--batch-size", batchSize)])
        if stop.contains("") { throw ValidationError("--stop needs a non-empty string") }
        if system != nil && !chat { throw ValidationError("--system goes with --chat (the chat template places it)") }
        if !chat, let prompt = prompt ?? text, prompt.allSatisfy(\.isWhitespace) { throw ValidationError("the prompt is empty: give some text") }
        if output != nil && input == nil { throw ValidationError("--output goes with --input (a batch of prompts); one prompt prints to stdout: add > FILE to keep it") }
        if promptColumn != nil && input == nil { throw ValidationError("--prompt-column goes with --input") }
        if let promptColumn, let input, !Dataset.isTable(input) {
            throw ValidationError("--prompt-column \(promptColumn) picks a column of a .csv, .tsv or .jsonl; \(input) is read as one prompt per line")
        }
        if batchSizeFlag != nil && input == nil { throw ValidationError("--batch-size goes with --input (one --prompt runs alone)") }
        if overwrite && output == nil { throw ValidationError("--overwrite goes with --output") }
        try checkModelArgument(model, flag: "--model") { try checkModelFolder($0, gguf: true) }
        try checkDataArgument(input, flag: "--input")
    }

    func run() throws {
        // Ctrl-C ends generation where it is: what was generated is printed or written, then exit 130.
        Interrupt.catchSIGINT()
        defer { Interrupt.release() }
        try withFlags { try generate() }
    }

    func generate() throws {
        if let output {
            // the input first: --overwrite would not help there
            if let input { try checkNotAnInput(output, flag: "--output", inputs: [("--input", input)], noun: "file") }
            try checkNewFile(output, flag: "--output", overwrite: overwrite)
        }
        let prompts = try input.map { try readPrompts(expand($0)) }   // before the model loads: a bad file costs nothing
        if !chat, let input, let empty = prompts?.first(where: { $0.text.allSatisfy(\.isWhitespace) }) {   // (a chat template has text of its own)
            throw UserError(description: "\(input): line \(empty.line): the prompt is empty: give some text, or remove the record")
        }
        let path = expand(model)
        // A decoder fine-tuned as a classifier keeps the LM's embeddings: it would "generate" through them.
        if let object = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/config.json"))) as? [String: Any],
           let kind = decoderClassifierKind(object, id2label: (try? DecoderConfig(path: path + "/config.json"))?.id2label ?? [:]) {
            throw UserError(description: "--model \(model): a classifier (\(kind)), not a language model; "
                            + "label texts with it: retort predict --model \(model) \"some text\"")
        }
        let backend = try device.backend()
        let started = Date()
        let decoder = try DecoderModel.load(path, backend: backend, inference: true)
        if decoder.config.quantization != nil {
            printError("retort: \(decoder.int8Weights.count) layers int8 as stored (retort quantize, weight-only)"
                       + (decoder.int8Weights.isEmpty ? ": no int8 kernels on \(backend.kind.rawValue), the dequantized weights run in fp32" : ""))
        } else if int8 {
            let kernels = try decoder.quantizeInt8()
            printError("retort: \(decoder.int8Weights.count) layers quantized to int8, weight-only "
                       + (kernels.map { "on \(backend.kind.rawValue)'s int8 kernels (\($0))" } ?? "(no int8 kernels on \(backend.kind.rawValue): the dequantized weights run in fp32)"))
        } else {
            let packed = try decoder.packForInference()
            if packed > 0 { printError(String(format: "retort: weights packed for the %@'s matmuls (%.0f MB more memory)", backend.kind.rawValue, Double(packed) / 1e6)) }
        }
        let tokenizer = try DecoderTokenizer(model: path, config: decoder.config)
        let template = chat ? try tokenizer.chatTemplate(model: model) : nil
        printError(String(format: "retort: %@ (%@, %d layers, %.0f M parameters) loaded in %.1f s", (path as NSString).lastPathComponent,
                          decoder.config.modelType, decoder.config.layers, Double(decoder.layout.total) / 1e6, Date().timeIntervalSince(started)))
        if maxNewTokens >= decoder.config.maxPositions {
            printError("retort: --max-new-tokens \(maxNewTokens) reaches past the model's context of \(decoder.config.maxPositions) tokens: "
                       + "generation stops where the context ends")
        }
        let sampling = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        func encode(_ text: String) throws -> [Int32] {
            // A chat template's text carries its own specials; a plain prompt gets the tokenizer's (a BOS).
            let ids = template.map { tokenizer.bpe.encode($0.render(user: text, system: system)) } ?? tokenizer.bpe.encodeAsInput(text)
            guard !ids.isEmpty else { throw UserError(description: "the prompt is empty: give some text") }
            guard ids.count < decoder.config.maxPositions else {
                throw UserError(description: "the prompt has \(ids.count) tokens; \(model)'s context is \(decoder.config.maxPositions): shorten it")
            }
            return ids
        }
        if let prompt = prompt ?? text {
            try stream(decoder, tokenizer, ids: try encode(prompt), sampling: sampling)
        } else if let input, let prompts {
            let ids = try prompts.map { prompt in
                do { return try encode(prompt.text) } catch let error as UserError {   // which of the file's prompts
                    throw UserError(description: "\(input): line \(prompt.line): \(error.description)")
                }
            }
            try batch(decoder, tokenizer, prompts: prompts, ids: ids, sampling: sampling)
        }
    }

    /// One prompt, its continuation printed as it comes (holding back what may start a stop string).
    func stream(_ decoder: DecoderModel, _ tokenizer: DecoderTokenizer, ids: [Int32], sampling: SamplingOptions) throws {
        var bytes: [UInt8] = [], printed = 0, firstToken: Date?, cut = false
        let holdBack = max(0, (stop.map(\.utf8.count).max() ?? 0) - 1), started = Date()
        func flush(upTo end: Int) {   // (ends on whole characters: each piece decodes alone, a stray byte as U+FFFD)
            guard end > printed else { return }
            FileHandle.standardOutput.write(Data(String(decoding: bytes[printed..<end], as: UTF8.self).utf8))
            printed = end
        }
        let result = try decoder.generate([GenerationRequest(prompt: ids, maxNewTokens: maxNewTokens)], sampling: sampling,
                                          endTokens: tokenizer.endTokens, onToken: { _, token in
            if firstToken == nil { firstToken = Date() }
            let checked = bytes.count   // no stop string lies wholly before this
            bytes += tokenizer.bpe.bytes(token)
            if let (at, _) = firstStop(bytes, from: checked - holdBack) {   // cut before anything of it is printed; `stopped` ends the run
                bytes.removeSubrange(at...)
                cut = true
            } else {
                flush(upTo: completeUTF8(bytes, limit: bytes.count - holdBack))
            }
        }, stopped: { _, _ in cut }, interrupted: { Interrupt.requested })[0]
        flush(upTo: completeUTF8(bytes, limit: bytes.count))   // a character the last token began but did not finish: dropped
        FileHandle.standardOutput.write(Data("\n".utf8))
        let end = Date(), prefill = (firstToken ?? end).timeIntervalSince(started), decode = end.timeIntervalSince(firstToken ?? end)
        // The decode rate counts the tokens after the first (which the prefill made): none with one token.
        let generated = result.tokens.count
        let decoding = generated > 1 ? String(format: " in %.2f s (%.1f tokens/s)", decode, Double(generated - 1) / max(decode, 1e-9)) : ""
        printError(String(format: "retort: prompt %@ in %.2f s (%.1f tokens/s); %@%@; stopped: %@", counted(ids.count, "token"), prefill,
                          Double(ids.count) / max(prefill, 1e-9), counted(generated, "new token"), decoding, result.finish))
        if result.finish == "interrupted" { throw ExitCode(Interrupt.exitStatus) }
    }

    /// Prompts from a file, `batchSize` sequences at a time, one JSON object per prompt.
    func batch(_ decoder: DecoderModel, _ tokenizer: DecoderTokenizer, prompts: [Example], ids: [[Int32]], sampling: SamplingOptions) throws {
        var lines: [String] = [], generated = 0, done = 0
        let started = Date(), shown = ProgressPrinter(showStages: false)
        // One call: at most --batch-size sequences at a time, a waiting prompt taking each freed
        // slot; a prompt's random stream follows its place in the file, not the batch it ran in.
        var texts = [[UInt8]](repeating: [], count: prompts.count), checked = [Int](repeating: 0, count: prompts.count)
        let holdBack = max(0, (stop.map(\.utf8.count).max() ?? 0) - 1)
        let results = try decoder.generate(ids.map { GenerationRequest(prompt: $0, maxNewTokens: maxNewTokens) }, batchSize: batchSize,
                                           sampling: sampling, endTokens: tokenizer.endTokens,
                                           onToken: { s, token in texts[s] += tokenizer.bpe.bytes(token) },
                                           stopped: { s, _ in
            defer { checked[s] = texts[s].count }   // no stop string lies wholly before this
            guard let (at, _) = firstStop(texts[s], from: checked[s] - holdBack) else { return false }
            texts[s].removeSubrange(at...)
            return true
        }, finished: { _, result in
            guard result.finish != "interrupted" else { return }
            done += 1
            let rate = Double(done) / max(Date().timeIntervalSince(started), 1e-9)
            shown.progress(String(format: "retort: %d of %d prompts  %.2f prompts/s  ETA %@", done, prompts.count, rate,
                                  duration(Double(prompts.count - done) / rate)), final: done == prompts.count)
        }, interrupted: { Interrupt.requested })
        shown.finish()
        for (i, result) in results.enumerated() {
            let whole = texts[i].prefix(completeUTF8(texts[i], limit: texts[i].count))   // as streamed: no half character at the end
            let object: [String: Any] = ["prompt": prompts[i].text, "completion": String(decoding: whole, as: UTF8.self),
                                         "tokens": result.tokens.count, "finish": result.finish, "line": prompts[i].line]
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
                                as: UTF8.self))
            generated += result.tokens.count
        }
        let text = lines.joined(separator: "\n") + "\n"
        if let output { try writeAtomically(Data(text.utf8), to: expand(output)) } else { FileHandle.standardOutput.write(Data(text.utf8)) }
        let seconds = Date().timeIntervalSince(started)
        let speed = String(format: "%@ in %.1f s (%.1f tokens/s)", counted(generated, "new token"), seconds, Double(generated) / max(seconds, 1e-9))
        if results.contains(where: { $0.finish == "interrupted" }) {
            printError("retort: interrupted: \(done) of \(prompts.count) prompts finished, \(speed); the others are written with "
                       + "\"finish\": \"interrupted\" and what they had generated")
            throw ExitCode(Interrupt.exitStatus)
        }
        printError("retort: \(counted(prompts.count, "prompt")), \(speed)")
    }

    /// The earliest stop string in `bytes` that starts at `start` or later: its start and which.
    /// (Callers pass where the last search ended, less the longest stop string but one byte, so
    /// that a long generation is not searched from its beginning at every token.)
    func firstStop(_ bytes: [UInt8], from start: Int) -> (Int, String)? {
        stop.compactMap { s -> (Int, String)? in
            let needle = Array(s.utf8), first = max(0, start)
            guard first + needle.count <= bytes.count else { return nil }
            for i in first...(bytes.count - needle.count) where bytes[i..<(i + needle.count)].elementsEqual(needle) { return (i, s) }
            return nil
        }.min { $0.0 < $1.0 }
    }

    /// A file's prompts: a .jsonl's "prompt" fields, a .csv's or .tsv's "prompt" column (or
    /// --prompt-column, a name or a 0-based index), any other file's non-blank lines.
    func readPrompts(_ path: String) throws -> [Example] {
        let columns = ColumnSpec(text: Dataset.isTable(path) ? Column(promptColumn ?? "prompt") : .name("text"))
        let prompts = try Dataset.load(path, columns: columns)
        // A column by index reads the file as headerless: a header's name would be the first prompt.
        if let promptColumn, case .index = columns.text, prompts.count >= 2, let first = prompts.first,
           first.text.count <= 40, first.text.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) != nil,
           prompts.dropFirst().filter({ $0.text.contains(where: \.isWhitespace) }).count * 2 > prompts.count - 1 {
            throw UserError(description: "\(input ?? path): line \(first.line) looks like a header ('\(first.text)'), not a prompt: "
                            + "name the column instead of its index \(promptColumn) (--prompt-column \(first.text)), or remove that line")
        }
        return prompts
    }
}

/// A --stop string as typed: \n, \t and \\ become a newline, a tab and a backslash (a shell
/// passes '\n' as two characters); any other backslash stays as it is.
func unescaped(_ text: String) -> String {
    var out = "", characters = Array(text), i = 0
    while i < characters.count {
        if characters[i] == "\\", i + 1 < characters.count, let replacement = ["n": "\n", "t": "\t", "\\": "\\"][characters[i + 1]] {
            out.append(replacement)
            i += 2
        } else {
            out.append(characters[i])
            i += 1
        }
    }
    return out
}

/// The longest prefix of bytes[..<limit] that ends on a whole UTF-8 character.
func completeUTF8(_ bytes: [UInt8], limit: Int) -> Int {
    var end = max(0, min(limit, bytes.count))
    var back = 0
    while end - back > 0 && back < 4 && bytes[end - back - 1] & 0xC0 == 0x80 { back += 1 }   // continuation bytes
    if end - back > 0 {
        let lead = bytes[end - back - 1], need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0
        if need > back { end -= back + 1 }
    }
    return end
}
