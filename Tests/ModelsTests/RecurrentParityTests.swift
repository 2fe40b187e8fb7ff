// Recurrent students against PyTorch (Tests/Golden/make_recurrent_golden.py): random two-layer
// bidirectional LSTM (max pooling), GRU (mean) and RNN (last) students on a batch of sequences of
// lengths 7, 4, 1 and 5 run through pack_padded_sequence — the last layer's outputs, the final
// states h_n (and the LSTM's c_n), the logits, MSE(logits, teacher) + CE(logits, labels) and
// every parameter's gradient; then a save / load round trip in PyTorch's names.
import Backend
import Foundation
@testable import Models
import XCTest

final class RecurrentParityTests: XCTestCase {
    func fixture(_ cell: RecurrentCell) throws -> (RecurrentModel, RecurrentActivations, SafeTensorsFile) {
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-recurrent-\(cell.rawValue).safetensors").path)
        let pooling = PoolingMode(rawValue: expected.metadata["pooling"] ?? "")!
        let config = RecurrentConfig(cell: cell, vocabSize: 40, embeddingSize: 8, hiddenSize: 6, layers: 2, bidirectional: true,
                                     pooling: pooling, headHiddenSize: 5, padTokenId: 0)
        let model = try RecurrentModel(config: config, labels: 3, backend: try CPUBackend())
        try model.loadWeights(expected.path)
        let ids = try expected.integers("input_ids").map { Int32($0) }, lengths = try expected.integers("lengths").map(Int.init)
        let T = ids.count / lengths.count
        let sequences = lengths.enumerated().map { b, n in Array(ids[(b * T)..<(b * T + n)]) }
        let a = try RecurrentActivations(config: config, labels: 3, maxBatch: 4, maxLength: T, backend: model.backend)
        a.load(sequences, pad: 0, labels: try expected.integers("labels").map { Int32($0) }, teacher: try expected.floats("teacher"),
               backend: model.backend)
        return (model, a, expected)
    }

    func testOutputsStatesLogitsLossAndEveryGradientMatchPyTorch() throws {
        for cell in RecurrentCell.allCases {
            let (model, a, expected) = try fixture(cell)
            let b = model.backend, (B, T, H) = (a.batch, a.length, 6)
            let logits = model.forward(a)
            assertClose(b.floats(a.layers[1].output.slice(0, T * B * 2 * H)), try expected.floats("output"), atol: 1e-6, rtol: 1e-5, "\(cell) output")
            var finals: [Float] = [], cells: [Float] = []
            for l in 0..<2 {
                for d in 0..<2 {
                    finals += b.floats(a.layers[l].finalState(d, batch: B, length: T, hidden: H))
                    if cell == .lstm { cells += b.floats(a.layers[l].finalState(d, batch: B, length: T, hidden: H, cell: true)) }
                }
            }
            assertClose(finals, try expected.floats("h_n"), atol: 1e-6, rtol: 1e-5, "\(cell) h_n")
            if cell == .lstm { assertClose(cells, try expected.floats("c_n"), atol: 1e-6, rtol: 1e-5, "lstm c_n") }
            assertClose(b.floats(logits), try expected.floats("logits"), atol: 1e-6, rtol: 1e-5, "\(cell) logits")
            // MSE against the teacher plus cross-entropy against the labels, gradients summed.
            let mse = try b.zeros(1), ce = try b.zeros(1), dCE = try b.zeros(B * 3)
            b.mse(mse, dA: model.dLogits(a), logits, a.teacher.slice(0, B * 3), count: B * 3, gradScale: 1)
            b.crossEntropy(ce, dLogits: dCE, logits: logits, labels: a.labels.slice(0, B), rows: B, classes: 3, gradScale: 1)
            b.axpy(model.dLogits(a), dCE, count: B * 3, alpha: 1)
            assertClose([b.floats(mse)[0] + b.floats(ce)[0]], try expected.floats("loss"), atol: 1e-6, rtol: 1e-5, "\(cell) loss")
            model.zeroGradients()
            model.backward(a)
            for e in model.layout.entries {
                assertClose(b.floats(model.g(e.name)), try expected.floats("grad." + e.name), atol: 1e-6, rtol: 1e-4, "\(cell) grad \(e.name)")
            }
        }
    }

    func testSaveLoadRoundTripKeepsPyTorchNames() throws {
        let (model, a, expected) = try fixture(.gru)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recurrent-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try model.save(folder: folder, id2label: [0: "a", 1: "b", 2: "c"], tokenizer: "wordpiece", maxLength: 7)
        let saved = try SafeTensorsFile(path: folder + "/model.safetensors")
        XCTAssertEqual(Set(saved.entries.keys), Set(expected.entries.keys.filter { !$0.hasPrefix("grad.") && $0.contains(".") }))
        let loaded = try RecurrentModel.load(folder: folder, backend: model.backend, inference: true)
        XCTAssertEqual(loaded.config.id2label, [0: "a", 1: "b", 2: "c"])
        XCTAssertEqual(loaded.config.maxLength, 7)
        let inference = try RecurrentActivations(config: loaded.config, labels: 3, maxBatch: 4, maxLength: 7, backend: model.backend, inference: true)
        let ids = try expected.integers("input_ids").map { Int32($0) }, lengths = try expected.integers("lengths").map(Int.init)
        inference.load(lengths.enumerated().map { b, n in Array(ids[(b * 7)..<(b * 7 + n)]) }, pad: 0, backend: model.backend)
        assertClose(model.backend.floats(loaded.forward(inference)), model.backend.floats(model.forward(a)), atol: 0, rtol: 0, "reloaded logits")

        // A config whose max_length cannot hold a text's specials (a 1 stopped predict, and serve at
        // its first request, with a trap) is refused when read, naming the file.
        let config = folder + "/config.json"
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: config))) as? [String: Any])
        object["max_length"] = 1
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: config))
        XCTAssertThrowsError(try RecurrentModel.load(folder: folder, backend: model.backend, inference: true)) {
            XCTAssertTrue("\($0)".hasPrefix("\(config): max_length must be 3…1,048,576"), "\($0)")
        }
    }
}
