// retort quantize from the command line, on the tiny golden classifier: the int8 folder predicts
// the float model's labels, eval and compare read it, and bad requests end in one line with
// nothing written.
import Foundation
import XCTest

final class QuantizeCLITests: TinyRunTestCase {
    func testQuantizedFolderPredictsAsTheFloatModelAndComparesBesideIt() throws {
        let out = work.appendingPathComponent("int8").path
        let (status, output) = try retort(["quantize", "--model", teacher, "--out", out])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("int8 kernels here:"), output)
        for name in ["config.json", "model.safetensors", "vocab.txt"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        func labels(_ model: String) throws -> [String] {
            let (status, output) = try retort(["predict", "--model", model, "--input", data, "--text-column", "text", "--json", "--threads", "1"])
            XCTAssertEqual(status, 0, output)
            return output.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["label"] as? String
            }
        }
        let (float, int8) = (try labels(teacher), try labels(out))
        XCTAssertEqual(float.count, 96)
        let agree = zip(float, int8).filter { $0 == $1 }.count
        XCTAssertGreaterThanOrEqual(agree, 90, "int8 labels agree with the float model's on \(agree) of 96")
        let (compared, table) = try retort(["compare", teacher, out, "--test", data, "--text-column", "text", "--label-column", "label",
                                            "--out", work.appendingPathComponent("report").path, "--threads", "1"])
        XCTAssertEqual(compared, 0, table)
        XCTAssertTrue(table.contains("| int8 | int8-dynamic |"), table)
        let row = table.split(separator: "\n").first { $0.hasPrefix("| int8 |") } ?? ""
        XCTAssertTrue(row.contains("| none |"), "a quantized folder trains no parameters: \(row)")
    }

    func testBadRequestsAreOneLineAndWriteNothing() throws {
        let out = work.appendingPathComponent("int8").path
        // What a killed quantize left beside its output (its process, on this machine, is gone) is
        // removed by the next one into that folder; a live process's, another machine's, a name
        // that is not a process number and another output's are not touched.
        let host = String(ProcessInfo.processInfo.hostName.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        let stale = work.appendingPathComponent(".int8.partial-\(host)-2147483000").path
        let kept = [".int8.partial-\(host)-1", ".int8.partial-elsewhere-2147483000", ".int8.partial-\(host)--5", ".int8.partial-\(host)-x",
                    ".int8-other.partial-\(host)-2147483000"].map { work.appendingPathComponent($0).path }
        for folder in [stale] + kept { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false) }
        XCTAssertEqual(try retort(["quantize", "--model", teacher, "--out", out]).0, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "a dead process's temporary folder")
        for folder in kept {
            XCTAssertTrue(FileManager.default.fileExists(atPath: folder), folder)
            try FileManager.default.removeItem(atPath: folder)
        }
        // An empty folder made for the output first is taken; one with anything in it is not.
        try FileManager.default.createDirectory(atPath: out + "-empty", withIntermediateDirectories: false)
        XCTAssertEqual(try retort(["quantize", "--model", teacher, "--out", out + "-empty", "--threads", "1"]).0, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "-empty/model.safetensors"))
        for (arguments, message) in [
            (["quantize", "--model", teacher, "--out", out], "exists; choose a new folder"),
            (["quantize", "--model", out, "--out", out + "2"], "is already quantized (int8-dynamic)"),
            (["quantize", "--model", golden.appendingPathComponent("tiny-gpt2").path, "--out", out + "3"], "no tokenizer.json, nor vocab.json and merges.txt"),
            (["quantize", "--model", work.path, "--out", out + "4"], "not a model folder (no config.json)"),
            (["finetune", "--model", out, "--train", data, "--out", out + "5", "--threads", "1", "--device", "cpu"], "is quantized (int8-dynamic), for eval, predict and compare"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertNotEqual(status, 0, output)
            let lines = output.split(separator: "\n").filter { !$0.hasPrefix("retort: cpu") }
            XCTAssertEqual(lines.count, 1, output)
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
        }
        let (distilled, refusal) = try retort(["distill", "--teacher", out, "--train", data, "--out", out + "6", "--max-length", "16", "--threads", "1", "--device", "cpu"])
        XCTAssertNotEqual(distilled, 0, refusal)
        XCTAssertTrue(refusal.contains("is quantized (int8-dynamic); distil from the float model it came from"), refusal)
        for suffix in ["2", "3", "4", "5", "6"] { XCTAssertFalse(FileManager.default.fileExists(atPath: out + suffix), suffix) }
        // A trailing slash names the same folder, and nothing is left beside it.
        let (slashed, made) = try retort(["quantize", "--model", teacher, "--out", work.appendingPathComponent("int8b").path + "/"])
        XCTAssertEqual(slashed, 0, made)
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("int8b/model.safetensors").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path).filter { $0.contains("partial") }, [])
    }

    /// On CUDA (here the emulated device) a quantized folder runs on int8_linear.cu's kernels: its
    /// linear layers no longer go through cuBLASLt, and its metrics are the CPU int8 model's within
    /// the rounding of the other ops (attention, LayerNorm) that feeds the next quantization.
    func testCUDARunsAQuantizedFolderOnItsInt8Kernels() throws {
        let out = work.appendingPathComponent("int8").path
        XCTAssertEqual(try retort(["quantize", "--model", teacher, "--out", out]).0, 0)
        func eval(_ model: String, _ device: String, _ environment: [String: String]) throws -> ([String: Any], String) {
            let (status, output) = try retort(["eval", "--model", model, "--data", data, "--text-column", "text", "--label-column", "label",
                                               "--json", "--device", device, "--max-length", "16"], environment: environment)
            XCTAssertEqual(status, 0, output)
            let line = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("{") }, output)
            return (try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]), output)
        }
        let (cpu, _) = try eval(out, "cpu", [:])
        let (cuda, quantizedRun) = try eval(out, "cuda", try emulatedCUDA())
        let (_, floatRun) = try eval(teacher, "cuda", try emulatedCUDA())
        let (a, b) = (try XCTUnwrap(cpu["accuracy"] as? Double), try XCTUnwrap(cuda["accuracy"] as? Double))
        XCTAssertLessThanOrEqual(abs(a - b), 3.0 / 96, "CPU int8 \(a), emulated CUDA int8 \(b)")
        XCTAssertEqual(try XCTUnwrap(cpu["loss"] as? Double), try XCTUnwrap(cuda["loss"] as? Double), accuracy: 0.02)
        // counters: launches, matmuls, …: the float model's linear layers are cuBLASLt matmuls, the quantized one's are not.
        let (quantizedMatmuls, floatMatmuls) = (try emulatedCounters(quantizedRun)[1], try emulatedCounters(floatRun)[1])
        XCTAssertLessThan(quantizedMatmuls, floatMatmuls / 4, "matmuls: int8 \(quantizedMatmuls), fp32 \(floatMatmuls)")
    }
}

