// Distillation losses against PyTorch (Tests/Golden/make_golden.py distill: TinyBERT's and
// DistilBERT's losses written as their reference code computes them) on a tiny random teacher
// (tiny-bert, hidden 64) and a narrower student (hidden 32, so the projection is exercised):
// every loss term, the total, and the gradient of every student parameter and of the projection.
// Also the student built from a teacher's layers and the checks on layer maps.
import Backend
import Foundation
@testable import Models
@testable import Train
import XCTest


final class DistillationTests: XCTestCase {
    func classifier(_ folder: String, _ backend: Backend) throws -> Classifier {
        let path = golden.appendingPathComponent(folder).path
        return Classifier(model: try BertModel.load(folder: path, backend: backend), tokenizer: try WordPieceTokenizer(folder: path),
                          labelNames: ["LABEL_0", "LABEL_1", "LABEL_2"], maxLength: 9)
    }

    /// Runs one case of the golden file and compares terms, total and gradients.
    func check(_ name: String, configure: (inout DistillationLoss) -> Void) throws {
        let backend = try CPUBackend()
        let teacher = try classifier("tiny-bert", backend), student = try classifier("tiny-bert-student", backend)
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-distill-expected.safetensors").path)
        var loss = DistillationLoss(layerMap: .uniform(student: 2, teacher: 2))
        configure(&loss)
        let objective = try Distillation.objective(teacher: teacher, student: student, loss: loss, maxBatch: 3, seed: 1)
        XCTAssertEqual(objective.projection.map(\.name), ["fit_dense.weight", "fit_dense.bias"])
        for p in objective.projection { try expected.floats(p.name).withUnsafeBytes { backend.upload(p.weight, $0) } }
        // The golden batch, as encodings (unpadded) and labels.
        let ids = try expected.integers("input_ids").map(Int32.init), mask = try expected.integers("attention_mask").map(Int32.init)
        let types = try expected.integers("token_type_ids").map(Int32.init), labels = try expected.integers("labels").map(Int32.init)
        let T = 9
        let batch = (0..<3).map { b -> Encoding in
            let n = Int(mask[(b * T)..<(b * T + T)].reduce(0, +))
            return Encoding(ids: Array(ids[(b * T)..<(b * T + n)]), typeIds: Array(types[(b * T)..<(b * T + n)]),
                            attentionMask: [Int32](repeating: 1, count: n))
        }
        let a = try BertActivations(config: student.model.config, labels: 3, maxBatch: 3, maxLength: T, backend: backend)
        student.load(batch, labels: labels, into: a)
        student.model.zeroGradients()
        let losses = StepLosses(try backend.zeros(StepLosses.capacity), backend: backend)
        losses.reset()
        objective.step(a, batch: batch, seed: 9, gradScale: 1, losses: losses, weight: 1)
        let (total, terms) = losses.read()

        let termNames = expected.entries.keys.filter { $0.hasPrefix(name + ".term.") }.sorted()
        XCTAssertEqual(Set(terms.map(\.name)), Set(termNames.map { String($0.dropFirst(name.count + 6)) }), "\(name): terms")
        for term in terms {
            assertClose([Float(term.value)], try expected.floats(name + ".term." + term.name), atol: 1e-6, rtol: 1e-4, "\(name) term \(term.name)")
        }
        assertClose([Float(total)], try expected.floats(name + ".loss"), atol: 1e-6, rtol: 1e-4, "\(name) loss")
        let grads = backend.floats(student.model.grads)
        let references = try student.model.layout.entries.map { try expected.floats(name + ".grad." + BertModel.fileName($0.name, prefix: "bert.")) }
            + (try objective.projection.map { try expected.floats(name + ".grad." + $0.name) })
        let largest = references.flatMap { $0 }.map(abs).max() ?? 1
        XCTAssertGreaterThan(largest, 1e-3, "\(name): the golden gradients must not vanish")
        for (e, reference) in zip(student.model.layout.entries, references) {
            assertClose(Array(grads[e.offset..<(e.offset + e.count)]), reference, atol: 1e-6 * largest, rtol: 1e-4, "\(name) gradient of \(e.name)")
        }
        for (p, reference) in zip(objective.projection, references.suffix(2)) {
            assertClose(backend.floats(p.grad), reference, atol: 1e-6 * largest, rtol: 1e-4, "\(name) gradient of \(p.name)")
        }
    }

    func testTinyBERTIntermediateLossesAndGradientsMatchPyTorch() throws {
        try check("intermediate") { $0.method = .tinybert; $0.stage = .intermediate }
    }

    func testTinyBERTPredictionLossesAndGradientsMatchPyTorch() throws {
        try check("prediction") { $0.method = .tinybert; $0.stage = .prediction; $0.temperature = 2; $0.hardLabelWeight = 0.5 }
    }

    func testDistilBERTLossesAndGradientsMatchPyTorch() throws {
        try check("distilbert") { $0.method = .distilbert; $0.temperature = 2; $0.alpha = 0.5; $0.beta = 0.5; $0.gamma = 1 }
    }

    func testStudentFromOddAndEvenLayersCopiesThoseLayers() throws {
        let backend = try CPUBackend()
        let teacher = try classifier("tiny-bert", backend), folder = golden.appendingPathComponent("tiny-bert").path
        for (initFrom, source) in [(StudentInit.odd, 0), (.even, 1)] {
            let student = try Distillation.makeStudent(teacher: teacher, teacherFolder: folder, initFrom: initFrom, layers: 1, backend: backend, seed: 1)
            XCTAssertEqual(student.model.config.layers, 1)
            XCTAssertEqual(student.model.config.jsonObject["num_hidden_layers"] as? Int, 1, "the saved config follows the typed field")
            for name in ["attention.self.query.weight", "output.LayerNorm.bias", "intermediate.dense.weight"] {
                XCTAssertEqual(backend.floats(student.model.w("encoder.layer.0." + name)), backend.floats(teacher.model.w("encoder.layer.\(source)." + name)),
                               "\(initFrom.name): \(name)")
            }
            for name in ["embeddings.word_embeddings.weight", "pooler.dense.weight", "classifier.weight"] {
                XCTAssertEqual(backend.floats(student.model.w(name)), backend.floats(teacher.model.w(name)), name)
            }
        }
        XCTAssertThrowsError(try Distillation.makeStudent(teacher: teacher, teacherFolder: folder, initFrom: .even, layers: 2, backend: backend, seed: 1)) {
            XCTAssertTrue("\($0)".contains("needs teacher layer 4"), "\($0)")
        }
    }

    func testLayerMapsParseAndRejectOutOfRangeLayers() throws {
        XCTAssertEqual(LayerMap.uniform(student: 3, teacher: 6).description, "0:1,1:3,2:5")
        XCTAssertEqual(LayerMap.following(.odd, student: 3, teacher: 6).description, "0:0,1:2,2:4")
        XCTAssertEqual(LayerMap.following(.even, student: 3, teacher: 6).description, "0:1,1:3,2:5")
        XCTAssertEqual(LayerMap.following(.uniform, student: 4, teacher: 12).description, "0:2,1:5,2:8,3:11")
        XCTAssertEqual(LayerMap.following(.folder("x"), student: 3, teacher: 6).description, "0:1,1:3,2:5")
        XCTAssertEqual(try LayerMap(parsing: "0:1, 2:5", student: 3, teacher: 6).description, "0:1,2:5")
        for (text, message) in [("0:6", "teacher layer 6 is out of range (the teacher has layers 0…5)"),
                                ("3:1", "student layer 3 is out of range (the student has layers 0…2)"),
                                ("0:1,0:2", "student layer 0 is mapped twice"), ("0-1", "'0-1' is not student:teacher")] {
            XCTAssertThrowsError(try LayerMap(parsing: text, student: 3, teacher: 6)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }
}
