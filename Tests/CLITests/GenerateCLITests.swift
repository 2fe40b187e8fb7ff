// retort generate on the real SmolLM2-135M-Instruct GGUF, as a user runs it: a streamed greedy
// continuation equal to transformers' greedy text (Tests/Golden/smollm2-expected.safetensors), a
// stop string, a JSONL batch of prompts, the chat template as transformers renders it, and
// one-line errors.
import Foundation
import Models
import XCTest

final class GenerateCLITests: XCTestCase {
    let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")

    /// stdout's text (the lines that are not retort's own stderr notes).
    func text(_ output: String) -> String {
        output.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("retort: ") }.joined(separator: "\n")
    }

    func testGreedyStreamEqualsTransformersAndStopStringsCut() throws {
        let model = try smolLM2()
        let prompt = "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n"
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("smollm2-expected.safetensors").path)
        let tokenizer = try ByteLevelBPE(gguf: try GGUFFile(path: model))
        let want = tokenizer.decode(try expected.integers("prompt2.greedy").map { Int32($0) })
        let (status, output) = try retort(["generate", "--model", model, "--prompt", prompt, "--max-new-tokens", "32", "--device", "cpu"])
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(text(output), want + "\n", "the streamed greedy text")
        XCTAssertTrue(output.contains("tokens/s"), "speed on stderr: \(output)")
        let (_, stopped) = try retort(["generate", "--model", model, "--prompt", prompt, "--max-new-tokens", "32", "--stop", "°C",
                                       "--device", "cpu"])
        XCTAssertEqual(text(stopped), String(want[..<want.range(of: "°C")!.lowerBound]) + "\n", "cut before the stop string")
        XCTAssertTrue(stopped.contains("stopped: stop"), stopped)
        // From a file (the batched path, searching only the bytes a token could have completed a
        // stop string with): the same cut, at whichever of two stop strings comes first.
        let prompts = FileManager.default.temporaryDirectory.appendingPathComponent("retort-stop-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: prompts) }
        let line = String(decoding: try JSONSerialization.data(withJSONObject: ["prompt": prompt]), as: UTF8.self)
        try (line + "\n" + line + "\n").write(to: prompts, atomically: true, encoding: .utf8)
        let (batchStatus, batch) = try retort(["generate", "--model", model, "--input", prompts.path, "--max-new-tokens", "32",
                                               "--stop", "°C", "--stop", "water", "--device", "cpu"])
        XCTAssertEqual(batchStatus, 0, batch)
        let first = [want.range(of: "°C")!, want.range(of: "water")!].min { $0.lowerBound < $1.lowerBound }!
        let results = try batch.split(separator: "\n").filter { $0.hasPrefix("{") }.map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(results.count, 2, batch)
        for result in results {
            XCTAssertEqual(result["completion"] as? String, String(want[..<first.lowerBound]), batch)
            XCTAssertEqual(result["finish"] as? String, "stop", batch)
        }
        // --stop '\n' as a shell passes it (a backslash and an n) stops at the first newline.
        let (_, firstLine) = try retort(["generate", "--model", model, "--chat", "List three colors.", "--max-new-tokens", "24", "--stop", "\\n",
                                    "--device", "cpu"])
        let cut = text(firstLine)
        XCTAssertTrue(firstLine.contains("stopped: stop") && cut.hasSuffix("\n") && cut.dropLast().allSatisfy { $0 != "\n" } && cut.count > 10,
                      firstLine)
    }

    /// --int8 (weight-only int8 on the CPU's kernels) keeps the greedy answer's first sentence.
    func testInt8WeightsKeepTheGreedyAnswer() throws {
        let model = try smolLM2()
        let prompt = "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n"
        let (status, output) = try retort(["generate", "--model", model, "--prompt", prompt, "--max-new-tokens", "20", "--device", "cpu", "--int8"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("retort: 211 layers quantized to int8, weight-only on cpu's int8 kernels ("), output)   // 30 × 7 + the head
        XCTAssertTrue(text(output).hasPrefix("The boiling point of water is approximately 100°C (212°F)."), output)
    }

    /// `retort quantize` on the GGUF stores the model `--int8` makes at load: generating from the
    /// folder gives the same text; the folder is refused for training and for a second quantize.
    func testQuantizedFolderGeneratesAsInt8AtLoad() throws {
        let model = try smolLM2()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-quantize-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("smollm2-int8").path
        let (status, output) = try retort(["quantize", "--model", model, "--out", out])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("211 weight matrices as int8 (weight-only)"), output)
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        let prompt = "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n"
        let arguments = ["generate", "--prompt", prompt, "--max-new-tokens", "20", "--device", "cpu"]
        let (_, atLoad) = try retort(arguments + ["--model", model, "--int8"])
        let (stored, fromFolder) = try retort(arguments + ["--model", out])
        XCTAssertEqual(stored, 0, fromFolder)
        XCTAssertTrue(fromFolder.contains("retort: 211 layers int8 as stored"), fromFolder)
        XCTAssertEqual(text(fromFolder), text(atLoad), "the stored int8 model generates as the one quantized at load")
        for (arguments, message, written) in [
            (["quantize", "--model", out, "--out", out + "2"], "is already quantized (int8-weight-only)", out + "2"),
            (["finetune", "--model", out, "--task", "causal-lm", "--train", out + "/merges.txt", "--out", out + "3", "--device", "cpu"],
             "holds int8 weights (retort quantize), for inference only", out + "3"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: written), written)
        }
    }

    /// A prompts file's path and an output path in a folder removed after the test.
    func promptFiles() throws -> (input: URL, output: URL) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-generate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return (folder.appendingPathComponent("prompts.txt"), folder.appendingPathComponent("out.jsonl"))
    }

    func testPromptsFromAFileGiveJSONL() throws {
        let model = try smolLM2()
        let (input, out) = try promptFiles()
        try "The capital of France is\nOnce upon a time\n".write(to: input, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["generate", "--model", model, "--input", input.path, "--output", out.path, "--max-new-tokens", "6",
                                           "--device", "cpu"])
        XCTAssertEqual(status, 0, output)
        let lines = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(first["prompt"] as? String, "The capital of France is")
        XCTAssertTrue((first["completion"] as? String ?? "").hasPrefix(" Paris"), "\(first)")
        let (_, single) = try retort(["generate", "--model", model, "Once upon a time", "--max-new-tokens", "6", "--device", "cpu"])
        let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        XCTAssertEqual((second["completion"] as? String ?? "") + "\n", text(single), "a batch generates what each prompt alone does (a prompt as the argument)")
        // Progress into a file (as here): whole lines, not one per prompt — the first, then at most one
        // every 10 s, and the last.
        try String(repeating: "Once upon a time\n", count: 5).write(to: input, atomically: true, encoding: .utf8)
        let (five, fiveOutput) = try retort(["generate", "--model", model, "--input", input.path, "--output", out.path, "--overwrite",
                                             "--batch-size", "1", "--max-new-tokens", "2", "--device", "cpu"])
        XCTAssertEqual(five, 0, fiveOutput)
        let progress = fiveOutput.split(separator: "\n").filter { $0.contains(" prompts  ") }
        XCTAssertEqual(progress.first?.hasPrefix("retort: 1 of 5 prompts  "), true, fiveOutput)
        XCTAssertEqual(progress.last?.hasPrefix("retort: 5 of 5 prompts  "), true, fiveOutput)
        XCTAssertLessThan(progress.count, 5, fiveOutput)
        XCTAssertFalse(fiveOutput.contains("\r"), fiveOutput)
        // Three tokens end inside a character (パ, then two of ッ's three bytes): stdout stays UTF-8
        // (the test reads it as UTF-8, or gets nothing), the half character dropped, in JSONL too.
        let (cut, cutOutput) = try retort(["generate", "--model", model, "日本の首都は東京です。大阪は", "--max-new-tokens", "3", "--device", "cpu"])
        XCTAssertEqual(cut, 0, cutOutput)
        XCTAssertEqual(text(cutOutput), "パ\n", cutOutput)
        try "日本の首都は東京です。大阪は\n".write(to: input, atomically: true, encoding: .utf8)
        let (batch, batchOutput) = try retort(["generate", "--model", model, "--input", input.path, "--max-new-tokens", "3", "--device", "cpu"])
        XCTAssertEqual(batch, 0, batchOutput)
        XCTAssertTrue(batchOutput.contains("\"completion\":\"パ\""), batchOutput)
        // A .csv's prompt column by its header's name; each line of the output names its prompt's line.
        let csv = input.deletingPathExtension().appendingPathExtension("csv")
        try "id,question\n7,\"The capital of France is\"\n".write(to: csv, atomically: true, encoding: .utf8)
        let (table, tableOutput) = try retort(["generate", "--model", model, "--input", csv.path, "--prompt-column", "question",
                                               "--max-new-tokens", "2", "--device", "cpu"])
        XCTAssertEqual(table, 0, tableOutput)
        XCTAssertTrue(tableOutput.contains("\"completion\":\" Paris") && tableOutput.contains("\"line\":2")
                      && tableOutput.contains("\"prompt\":\"The capital of France is\""), tableOutput)
        // A .tsv without a header (CoLA's, SST-2's): the column by its 0-based index.
        let tsv = input.deletingPathExtension().appendingPathExtension("tsv")
        try "gj04\t1\tThe capital of France is\n".write(to: tsv, atomically: true, encoding: .utf8)
        let (indexed, indexedOutput) = try retort(["generate", "--model", model, "--input", tsv.path, "--prompt-column", "2",
                                                   "--max-new-tokens", "2", "--device", "cpu"])
        XCTAssertEqual(indexed, 0, indexedOutput)
        XCTAssertTrue(indexedOutput.contains("\"completion\":\" Paris") && indexedOutput.contains("\"line\":1"), indexedOutput)
        // Its own output over its input is refused (the prompts would be lost), before --overwrite is asked for.
        let (over, overOutput) = try retort(["generate", "--model", model, "--input", tsv.path, "--output", tsv.path,
                                             "--max-new-tokens", "2", "--device", "cpu"])
        XCTAssertNotEqual(over, 0, overOutput)
        XCTAssertTrue(overOutput.contains("--output \(tsv.path) is the --input this command reads"), overOutput)
    }

    /// Ctrl-C or SIGTERM (sent here: kill, timeout, a scheduler) ends a batch where it is: every
    /// prompt is written, the unfinished ones with "finish": "interrupted" and what they had, and
    /// the exit status is 128 + the signal's number (143; 130 for Ctrl-C, the same path).
    func testCtrlCWritesWhatWasGenerated() throws {
        let model = try smolLM2()
        let (input, out) = try promptFiles()
        try "Once upon a time\nThe cat\nA dog\n".write(to: input, atomically: true, encoding: .utf8)
        let process = try RetortProcess(["generate", "--model", model, "--input", input.path, "--output", out.path, "--batch-size", "1",
                                         "--max-new-tokens", "4000", "--temperature", "1", "--device", "cpu"])
        // Interrupt once generating (its load note is printed, then a moment of tokens).
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !((try? String(contentsOf: process.output, encoding: .utf8)) ?? "").contains(" loaded in ") { usleep(50_000) }
        sleep(2)
        kill(process.process.processIdentifier, SIGTERM)
        let (status, output) = process.finish()
        XCTAssertEqual(status, 143, output)
        let finishes = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
            .map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["finish"] as? String }
        XCTAssertEqual(finishes.count, 3, output)
        XCTAssertEqual(finishes.last, "interrupted", "the last prompt cannot have run to its 4,000 tokens: \(output)")
        let finished = finishes.filter { $0 != "interrupted" }.count   // (a prompt may have met its end token first)
        XCTAssertTrue(output.contains("retort: interrupted: \(finished) of 3 prompts finished"), output)
    }

    /// More new tokens than the context holds: said at once, and generation stops where it would anyway.
    func testMoreNewTokensThanTheContextIsSaid() throws {
        let (status, output) = try retort(["generate", "--model", try smolLM2(), "--prompt", "Hello", "--max-new-tokens", "9000",
                                           "--stop", " ", "--stop", "-", "--stop", ",", "--stop", ".", "--stop", "\\n",   // (greedy here: "-by-date-…")
                                           "--device", "cpu", "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("retort: --max-new-tokens 9000 reaches past the model's context of 8192 tokens: generation stops where the context ends"),
                      output)
    }

    func testChatTemplateRendersAsTransformers() throws {
        let gguf = try GGUFFile(path: try smolLM2())
        let template = try XCTUnwrap(ChatTemplate(jinja: try XCTUnwrap(try gguf.string("tokenizer.chat_template"))))
        // transformers' apply_chat_template(…, add_generation_prompt=True) on this GGUF:
        XCTAssertEqual(template.render(user: "Hi there"),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                       + "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(template.render(user: "Hi there", system: "Be brief."),
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertNil(ChatTemplate(jinja: "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"))
    }

    /// Qwen2's template (`!= 'system'`, its newlines written as Jinja escapes) and Qwen2.5's (the
    /// default in the else branch of `== 'system'`, after a tools branch): the text Jinja renders
    /// for them (jinja2 3.1, as transformers' apply_chat_template, add_generation_prompt=True).
    func testQwenTemplatesDefaultSystemMessages() throws {
        let qwen2 = #"""
{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
"""#
        let qwen25 = #"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "<|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""#
        let turn = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        XCTAssertEqual(try XCTUnwrap(ChatTemplate(jinja: qwen2)).render(user: "Hi there"),
                       "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turn)
        let template = try XCTUnwrap(ChatTemplate(jinja: qwen25))
        XCTAssertEqual(template.render(user: "Hi there"),
                       "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" + turn)
        XCTAssertEqual(template.render(user: "Hi there", system: "Be brief."), "<|im_start|>system\nBe brief.<|im_end|>\n" + turn)
        XCTAssertNil(try XCTUnwrap(ChatTemplate(jinja: "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}")).defaultSystem,
                     "no default system turn")
    }

    func testBadInputGetsOneLine() throws {
        let model = try smolLM2()
        for (arguments, message) in [
            (["--model", "/nonexistent/model.gguf", "--prompt", "x"], "no such model folder or .gguf file"),
            (["--model", model], "give a prompt (an argument or --prompt) or --input"),
            (["--model", model, "x", "--prompt", "y"], "give the prompt once"),
            (["--model", model, "--prompt", "x", "--top-p", "0"], "--top-p must be in (0, 1]"),
            (["--model", model, "--prompt", "x", "--top-k", "5"], "--top-k goes with sampling: add --temperature (e.g. 0.8)"),
            (["--model", model, "--prompt", "x", "--temperature", "inf"], "--temperature must be 0 (greedy) or a positive number"),
            (["--model", model, "--input", "/nonexistent/prompts.txt"], "/nonexistent/prompts.txt: no such file"),
            (["--model", model, "--prompt", "x", "--prompt-column", "q"], "--prompt-column goes with --input"),
            (["--model", model, "--input", "prompts.txt", "--prompt-column", "q"], "--prompt-column q picks a column of a .csv, .tsv or .jsonl"),
            (["--model", model, "   "], "the prompt is empty: give some text"),
            (["--model", golden.appendingPathComponent("tiny-llama").path, "--prompt", "x"], "no tokenizer.json, nor vocab.json and merges.txt"),
        ] {
            let (status, output) = try retort(["generate"] + arguments + ["--device", "cpu"])
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
            XCTAssertFalse(output.contains("Fatal error"), output)
            XCTAssertFalse(output.contains(" loaded in "), "refused before the model loads: \(output)")
        }
    }
}
