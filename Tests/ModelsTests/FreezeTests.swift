// Freezing any set of parameters: the frozen ones get no gradient storage, the others the same
// gradients as when everything trains — including a frozen word table with trained position and
// type tables, and a frozen LayerNorm inside a trained layer.
import Backend
import Foundation
@testable import Models
import XCTest

final class FreezeTests: XCTestCase {
    func testFrozenParametersHaveNoGradientAndTheOthersTheSameGradients() throws {
        let folder = golden.appendingPathComponent("tiny-bert").path
        let (full, a, _) = try goldenBatch("tiny-bert-expected.safetensors", try BertModel.load(folder: folder, backend: try CPUBackend()))
        full.zeroGradients()
        full.forward(a)
        full.backward(a)
        let frozen: Set = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.output.LayerNorm.weight",
                           "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.intermediate.dense.bias"]
        let (partly, b, _) = try goldenBatch("tiny-bert-expected.safetensors", try BertModel.load(folder: folder, backend: try CPUBackend()))
        try partly.freeze(frozen)
        XCTAssertEqual(partly.grads.count, partly.layout.total - frozen.reduce(0) { $0 + partly.layout.entry($1)!.count })
        XCTAssertEqual(Set(partly.trainable.map(\.name)), Set(partly.layout.entries.map(\.name)).subtracting(frozen))
        partly.zeroGradients()
        partly.forward(b)
        partly.backward(b)
        for e in partly.gradientLayout.entries {
            XCTAssertEqual(partly.backend.floats(partly.g(e.name)), full.backend.floats(full.g(e.name)), e.name)
        }
        XCTAssertNil(partly.parameters.wordEmbeddings.grad)
        XCTAssertNil(partly.parameters.layers[0].attentionNorm.weight.grad)
        XCTAssertNotNil(partly.parameters.layers[0].attentionNorm.bias.grad)
    }
}
