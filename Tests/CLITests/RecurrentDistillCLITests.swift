// `retort distill --student bilstm|gru|…` end to end on the tiny golden teacher: the student folder
// (config.json, model.safetensors in PyTorch's names, the teacher's vocabulary), metrics, the
// report's row, and eval / predict / compare on the folder; the loss options; and flags that do
// not go with a recurrent student, refused in one line.
import Foundation
import Models
import XCTest

final class RecurrentDistillCLITests: TinyRunTestCase {
    func distill(_ extra: [String]) throws -> (Int32, String) {
        try retort(["distill", "--teacher", teacher, "--train", data, "--max-length", "12", "--batch-size", "8", "--threads", "1"] + extra)
    }

    func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    func testABiLSTMStudentIsSavedInPyTorchNamesAndEveryCommandReadsIt() throws {
        let out = work.appendingPathComponent("bilstm").path
        let (status, output) = try distill(["--student", "bilstm", "--hidden", "16", "--head-hidden", "8", "--epochs", "2", "--test", data,
                                            "--out", out])
        XCTAssertEqual(status, 0, output)
        // --resume names a student of another kind or shape before any work.
        let (forgot, forgotOutput) = try distill(["--epochs", "2", "--out", out, "--resume"])
        XCTAssertNotEqual(forgot, 0)
        XCTAssertTrue(forgotOutput.contains("--resume: \(out) holds a bilstm student; resume it with --student bilstm"), forgotOutput)
        let (other, otherOutput) = try distill(["--student", "bigru", "--hidden", "12", "--head-hidden", "8", "--epochs", "2", "--out", out, "--resume"])
        XCTAssertNotEqual(other, 0)
        XCTAssertTrue(otherOutput.contains("--resume: \(out) holds another student: --student bigru (the saved student: bilstm), --hidden 12 (saved: 16); "
                                           + "resume with the saved student's flags"), otherOutput)
        let config = try json(out + "/config.json")
        XCTAssertEqual(config["model_type"] as? String, "retort-recurrent")
        XCTAssertEqual(config["cell"] as? String, "lstm")
        XCTAssertEqual(config["bidirectional"] as? Bool, true)
        XCTAssertEqual(config["embedding_size"] as? Int, 64, "the teacher's width: its word embeddings")
        XCTAssertEqual((config["id2label"] as? [String: String])?["2"], "LABEL_2")
        let weights = try SafeTensorsFile(path: out + "/model.safetensors")
        XCTAssertEqual(Set(weights.entries.keys), ["embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                                                   "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse", "rnn.bias_ih_l0_reverse",
                                                   "rnn.bias_hh_l0_reverse", "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"])
        XCTAssertEqual(try weights.entry("rnn.weight_hh_l0").shape, [64, 16])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/vocab.txt"), "the teacher's vocabulary travels with the student")
        let metrics = try json(out + "/metrics.json")
        XCTAssertEqual(metrics["method"] as? String, "bilstm")
        XCTAssertNotNil((metrics["test"] as? [String: Any])?["accuracy"] as? Double)
        XCTAssertTrue(output.contains("| bilstm | bilstm |"), output)
        XCTAssertTrue(output.contains("teacher logits for 86 training texts"), output)
        let log = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"mse\""), log)

        // eval on the data gives the test accuracy the run reported; predict and compare read the folder.
        let (evalStatus, evaluated) = try retort(["eval", "--model", out, "--data", data, "--json", "--threads", "1"])
        XCTAssertEqual(evalStatus, 0, evaluated)
        let line = evaluated.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
        let accuracy = (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["accuracy"] as? Double
        XCTAssertEqual(accuracy ?? -1, (metrics["test"] as? [String: Any])?["accuracy"] as? Double ?? -2, accuracy: 1e-9, evaluated)
        let (predictStatus, predicted) = try retort(["predict", "--model", out, "--json", "w1 w2 w3", "a b", "--threads", "1"])
        XCTAssertEqual(predictStatus, 0, predicted)
        XCTAssertEqual(predicted.split(separator: "\n").filter { $0.hasPrefix("{\"") }.count, 2, predicted)
        let (compareStatus, compared) = try retort(["compare", teacher, out, "--test", data, "--out", work.appendingPathComponent("report").path,
                                                    "--threads", "1"])
        XCTAssertEqual(compareStatus, 0, compared)
        XCTAssertTrue(compared.contains("| bilstm | bilstm |"), compared)
    }

    func testAGRUWithLearnedProjectedEmbeddingsAndSoftCrossEntropyPlusLabels() throws {
        let out = work.appendingPathComponent("gru").path
        let (status, output) = try distill(["--student", "gru", "--hidden", "8", "--student-layers", "2", "--pooling", "mean", "--embeddings", "learned",
                                            "--embedding-size", "12", "--loss", "soft-ce", "--temperature", "2", "--hard-label-weight", "0.5",
                                            "--epochs", "1", "--no-report", "--out", out])
        XCTAssertEqual(status, 0, output)
        let config = try json(out + "/config.json")
        XCTAssertEqual(config["bidirectional"] as? Bool, false)
        XCTAssertEqual(config["num_layers"] as? Int, 2)
        XCTAssertEqual(config["embedding_size"] as? Int, 12)
        let log = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"soft_ce\"") && log.contains("\"ce\""), log)
        XCTAssertEqual(try json(out + "/metrics.json")["temperature"] as? Double, 2)

        // Projected teacher embeddings: a width of its own, from the teacher's rows.
        let projected = work.appendingPathComponent("rnn").path
        let (status2, output2) = try distill(["--student", "birnn", "--hidden", "8", "--pooling", "last", "--embedding-size", "12", "--epochs", "1",
                                              "--no-report", "--out", projected])
        XCTAssertEqual(status2, 0, output2)
        XCTAssertTrue(output2.contains("embeddings 12 wide (the teacher's, projected)"), output2)
    }

    func testFlagsThatDoNotFitARecurrentStudentAreRefusedInOneLine() throws {
        let out = work.appendingPathComponent("bad").path
        for (flags, message) in [(["--student", "bilstm", "--lora-rank", "4"], "--lora-rank are for transformer students"),
                                 (["--student", "transformerish"], "--student must be transformer, bilstm"),
                                 (["--student", "bigru", "--pooling", "sum"], "--pooling must be max, mean or last"),
                                 (["--student", "lstm", "--epochs", "3,2"], "--epochs: one positive whole number"),
                                 (["--student", "lstm", "--loss", "kl"], "--loss must be mse or soft-ce"),
                                 (["--student", "lstm", "--temperature", "2"], "--temperature goes with --loss soft-ce"),
                                 // (A batch larger than the data is planned for the data: no longer refused.)
                                 (["--student", "bilstm", "--embedding-size", "1000000"], "this run needs"),
                                 (["--student", "bilstm", "--embedding-size", "1000000"], "a smaller --embedding-size (now 1000000)"),
                                 // Planned before the student is made: a width that would not fit is never allocated.
                                 (["--student", "bilstm", "--hidden", "1000000"], "a smaller --hidden (now 1000000)"),
                                 (["--student", "gru", "--student-layers", "2", "--hidden", "300000"], "fewer --student-layers (now 2)"),
                                 (["--student", "lstm", "--hidden", "0"], "--hidden must be positive (got 0)"),
                                 (["--student", "lstm", "--recompute", "gelu"], "--recompute is for transformer students"),
                                 (["--student", "lstm", "--transfer", data], "give --train or --transfer, not both")] {
            let (status, output) = try distill(flags + ["--out", out])
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(message), output)
            XCTAssertEqual(output.split(separator: "\n").filter { $0.contains("Error") || $0.contains("error") }.count, 1, output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written for refused flags")
        }
    }
}
