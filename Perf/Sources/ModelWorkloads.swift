// Whole-model workloads on the real all-MiniLM-L6-v2 (from scripts/fetch-assets): a fine-tuning
// step (forward with dropout, backward, gradient clipping, AdamW) and inference, beside the same
// in PyTorch + transformers. Skipped with a note when the weights are not there.
import Backend
import Foundation
import Models
import Train

func makeModelWorkloads(_ backend: Backend, quick: Bool, wants: (String) -> Bool = { _ in true }) throws -> [Workload] {
    let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
    let folder = root + "/all-MiniLM-L6-v2"
    guard FileManager.default.fileExists(atPath: folder + "/model.safetensors") else {
        print("model workloads skipped: \(folder) not found (run scripts/fetch-assets)")
        return []
    }
    var list: [Workload] = []
    let stepName = { (lora: Bool) in "MiniLM-L6 \(lora ? "LoRA r=8 q,v" : "full") fine-tuning step B=32 T=64" }
    let distillName = { (stage: DistillationStage) in "TinyBERT \(stage.rawValue) distillation step MiniLM-L6 → 3 layers B=32 T=64" }
    let inferenceName = { (B: Int, T: Int) in "MiniLM-L6 inference B=\(B) T=\(T)" }
    let mpnetNames = ["MPNet-base full fine-tuning step B=32 T=128", "MPNet-base LoRA r=8 q,v fine-tuning step B=32 T=128",
                      "TinyBERT intermediate distillation step MPNet-base → 6 layers B=32 T=128"]
    let int8Names = (torch: "MiniLM-L6 int8 inference B=1 T=32", fp32: "MiniLM-L6 int8 inference B=1 T=32 vs fp32",
                     hiddenFP32: "int8 comparison: MiniLM-L6 fp32 inference B=1 T=32")
    let studentNames = (bilstm: "BiLSTM student inference B=1 T=64 vs the 3-layer transformer student",
                        transformer: "student comparison: 3-layer transformer student inference B=1 T=64")
    guard ([false, true].map(stepName) + [DistillationStage.intermediate, .prediction].map(distillName) + [inferenceName(1, 32), inferenceName(32, 64)]
           + mpnetNames + [int8Names.torch, int8Names.fp32, studentNames.bilstm]).map(wants).contains(true) else { return [] }
    let model = try BertModel.load(folder: folder, labels: 2, backend: backend)
    func batch(_ B: Int, _ T: Int) throws -> BertActivations { try randomBatch(model, B, T) }
    let reps = quick ? 3 : 10
    // Fine-tuning steps at B=32, T=64: full, and LoRA (r 8, alpha 16, query+value; base frozen).
    for lora in [false, true] where wants(stepName(lora)) {
        let (B, T) = (32, 64)
        let stepModel = lora ? try BertModel.load(folder: folder, labels: 2, backend: backend) : model
        if lora { try stepModel.attachLoRA(LoRAConfig(rank: 8, alpha: 16, dropout: 0.1, targets: [.query, .value])) }
        let a = try batch(B, T)
        let run = try fineTuningStep(stepModel, a)
        list.append(Workload(name: stepName(lora), unit: "ktok/s",
                             work: Double(B * T) * 1e6,   // value = work / s / 1e9 → thousands of tokens per second
                             warmup: 2, reps: reps, run: run,
                             spec: ["op": "bert_train_step", "model": folder, "batch": B, "length": T, "lora": lora]))
    }
    // On a GPU: the full-size teacher's fine-tuning step, all-mpnet-base-v2 at B=32, T=128.
    let mpnet = root + "/all-mpnet-base-v2"
    if backend.kind == .cuda, FileManager.default.fileExists(atPath: mpnet + "/model.safetensors"), wants(mpnetNames[0]) {
        let (B, T) = (32, 128)
        let big = try BertModel.load(folder: mpnet, labels: 2, backend: backend)
        let a = try randomBatch(big, B, T)
        list.append(Workload(name: mpnetNames[0], unit: "ktok/s", work: Double(B * T) * 1e6,
                             warmup: 2, reps: reps, run: try fineTuningStep(big, a),
                             spec: ["op": "bert_train_step", "model": mpnet, "batch": B, "length": T, "lora": false]))
    }
    if backend.kind == .cuda, FileManager.default.fileExists(atPath: mpnet + "/model.safetensors") {
        list += mpnetWorkloads(backend, folder: mpnet, reps: reps).filter { wants($0.name) }   // built at measurement (setup)
    }
    // TinyBERT distillation steps, all-MiniLM-L6-v2 → 3 layers from its odd layers, B=32, T=64:
    // teacher forward (inference arena), student forward/backward with the stage's losses, clip, AdamW.
    for stage in [DistillationStage.intermediate, .prediction] where wants(distillName(stage)) {
        let (B, T) = (32, 64)
        let tokenizer = try WordPieceTokenizer(folder: folder)
        let teacher = Classifier(model: model, tokenizer: tokenizer, labelNames: ["0", "1"], maxLength: T)
        let student = try Distillation.makeStudent(teacher: teacher, teacherFolder: folder, initFrom: .odd, layers: 3, backend: backend, seed: 1)
        var loss = DistillationLoss(layerMap: .uniform(student: 3, teacher: 6))
        loss.stage = stage
        let objective = try Distillation.objective(teacher: teacher, student: student, loss: loss, maxBatch: B, seed: 1)
        let a = try BertActivations(config: student.model.config, labels: 2, maxBatch: B, maxLength: T, backend: backend)
        let encodings = randomEncodings(B, T)
        student.load(encodings, labels: (0..<B).map { Int32($0 % 2) }, into: a)
        let losses = StepLosses(try backend.zeros(StepLosses.capacity), backend: backend)
        let run = optimizerStep(try Optimizer(model: student.model, idle: objective.idleParameters), learningRate: 5e-5) { step in
            student.model.zeroGradients()
            losses.reset()
            objective.step(a, batch: encodings, seed: UInt64(step), gradScale: 1, losses: losses, weight: 1)
        }
        list.append(Workload(name: distillName(stage), unit: "ktok/s",
                             work: Double(B * T) * 1e6, warmup: 2, reps: reps, run: run,
                             spec: ["op": "distill_step", "model": folder, "batch": B, "length": T, "stage": stage.rawValue]))
    }
    // Inference: latency at B=1, T=32 and throughput at B=32, T=64.
    for (B, T) in [(1, 32), (32, 64)] where wants(inferenceName(B, T)) {
        let a = try batch(B, T)
        list.append(Workload(name: inferenceName(B, T), unit: B == 1 ? "ms" : "ktok/s",
                             work: B == 1 ? 0 : Double(B * T) * 1e6, warmup: 3, reps: B == 1 ? 4 * reps : reps,
                             run: { model.forward(a) }, spec: ["op": "bert_inference", "model": folder, "batch": B, "length": T]))
    }
    // Dynamic int8 (retort quantize) at B=1, T=32, where the backend has int8 kernels: beside
    // torch.ao.quantization.quantize_dynamic on the same model, and beside Retort's fp32.
    if backend.int8Kernels != nil, wants(int8Names.torch) || wants(int8Names.fp32) {
        let temporary = NSTemporaryDirectory() + "retort-perf-int8-\(ProcessInfo.processInfo.processIdentifier)"
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        try model.saveQuantized(folder: temporary)
        let int8 = try BertModel.load(folder: temporary, labels: 2, backend: backend, inference: true)
        let (a, fp32) = (try randomBatch(int8, 1, 32), try batch(1, 32))
        let run: () -> Void = { int8.forward(a) }
        list.append(Workload(name: int8Names.hiddenFP32, unit: "ms", work: 0, warmup: 3, reps: 4 * reps, run: { _ = model.forward(fp32) }, hidden: true))
        if wants(int8Names.torch) {
            list.append(Workload(name: int8Names.torch, unit: "ms", work: 0, warmup: 3, reps: 4 * reps, run: run,
                                 spec: ["op": "bert_inference", "model": folder, "batch": 1, "length": 32, "int8": true]))
        }
        if wants(int8Names.fp32) {
            list.append(Workload(name: int8Names.fp32, unit: "ms", work: 0, warmup: 3, reps: 4 * reps, run: run, compareTo: int8Names.hiddenFP32))
        }
    }
    // The two students `retort distill` makes from this teacher, one text each (B=1, T=64): the
    // 3-layer transformer (the teacher's odd layers) and the default BiLSTM (the teacher's 384-wide
    // embeddings, 300 units per direction, max pooling, a 200-wide head). Weights do not change the time.
    if wants(studentNames.bilstm) {
        let (T, tokenizer) = (64, try WordPieceTokenizer(folder: folder))
        let teacher = Classifier(model: model, tokenizer: tokenizer, labelNames: ["0", "1"], maxLength: T)
        let transformer = try Distillation.makeStudent(teacher: teacher, teacherFolder: folder, initFrom: .odd, layers: 3, backend: backend, seed: 1)
        let a = try randomBatch(transformer.model, 1, T)
        list.append(Workload(name: studentNames.transformer, unit: "ms", work: 0, warmup: 3, reps: 4 * reps,
                             run: { _ = transformer.model.forward(a) }, hidden: true))
        let d = RecurrentDistillationRun.Configuration(teacher: folder, data: DataFiles(train: ""), output: "")   // distill's defaults
        let config = RecurrentConfig(cell: d.cell, vocabSize: model.config.vocabSize, embeddingSize: model.config.hiddenSize,
                                     hiddenSize: d.hiddenSize, layers: d.layers, bidirectional: d.bidirectional, pooling: d.pooling,
                                     headHiddenSize: d.headHiddenSize, padTokenId: 0)
        let bilstm = try RecurrentModel(config: config, labels: 2, backend: backend, inference: true)
        let r = try RecurrentActivations(config: config, labels: 2, maxBatch: 1, maxLength: T, backend: backend, inference: true)
        r.load([randomEncodings(1, T)[0].ids], pad: 0, backend: backend)
        list.append(Workload(name: studentNames.bilstm, unit: "ms", work: 0, warmup: 3, reps: 4 * reps, run: { _ = bilstm.forward(r) },
                             compareTo: studentNames.transformer))
    }
    return list
}

/// B unpadded sequences of T token ids in 1000…19999 (the same on every run), single segment.
func randomEncodings(_ B: Int, _ T: Int) -> [Encoding] {
    var state: UInt64 = 7
    return (0..<B).map { _ -> Encoding in
        let ids = (0..<T).map { _ -> Int32 in state = state &* 6_364_136_223_846_793_005 &+ 1; return Int32(1000 + (state >> 33) % 19000) }
        return Encoding(ids: ids)
    }
}

/// An arena for `model` holding randomEncodings(B, T) with labels 0, 1, 0, …
func randomBatch(_ model: BertModel, _ B: Int, _ T: Int) throws -> BertActivations {
    let a = try BertActivations(config: model.config, labels: 2, maxBatch: B, maxLength: T, backend: model.backend)
    let ids = randomEncodings(B, T).flatMap(\.ids)
    a.load(ids: ids, types: [Int32](repeating: 0, count: B * T), mask: [Int32](repeating: 1, count: B * T),
           labels: (0..<B).map { Int32($0 % 2) }, batch: B, length: T, backend: model.backend)
    return a
}

/// The trainer's step: forward with dropout, backward, clip to 1, AdamW.
func fineTuningStep(_ model: BertModel, _ a: BertActivations) throws -> () -> Void {
    optimizerStep(try Optimizer(model: model), learningRate: 5e-5) { step in
        model.zeroGradients()
        model.forward(a, training: true, seed: UInt64(step))
        model.backward(a)
    }
}

/// A training step as a timed run: `pass(step)` (gradients zeroed, forward, backward; `step`
/// from 1, its dropout seed), then clipping to norm 1 and an AdamW step (weight decay 0.01).
func optimizerStep(_ optimizer: Optimizer, learningRate: Double, pass: @escaping (Int) -> Void) -> () -> Void {
    var step = 0
    return {
        step += 1
        pass(step)
        optimizer.clip(maxNorm: 1)
        optimizer.step(learningRate: learningRate, weightDecay: 0.01, step: step)
    }
}

/// Model FLOPs of one token through one layer's forward at length T: the q, k, v, output and FFN
/// matmuls and attention's two T-long products (2 FLOPs per multiply-add).
func layerForwardFlopsPerToken(_ c: BertConfig, length T: Int) -> Double {
    let C = Double(c.hiddenSize), I = Double(c.intermediateSize)
    return 2 * (4 * C * C + 2 * C * I) + 4 * Double(T) * C
}

/// The issue's GPU steps, on all-mpnet-base-v2 at B=32, T=128 (built when measured, so each one's
/// peak memory is its own): LoRA fine-tuning (r 8, q and v), and a TinyBERT intermediate-stage
/// distillation step into a 6-layer student from its odd layers. At bf16/fp16 the reference runs
/// under torch.autocast in that type (PyTorch + PEFT eager AMP).
func mpnetWorkloads(_ backend: Backend, folder: String, reps: Int) -> [Workload] {
    let (B, T) = (32, 128), tokens = Double(B * T)
    let encodings = randomEncodings(B, T)
    let labels = (0..<B).map { Int32($0 % 2) }
    guard let config = try? BertConfig(path: folder + "/config.json") else { return [] }
    let perLayer = layerForwardFlopsPerToken(config, length: T) * tokens, layers = Double(config.layers)
    let lora = Workload(name: "MPNet-base LoRA r=8 q,v fine-tuning step B=\(B) T=\(T)", unit: "ktok/s", work: tokens * 1e6,
                        warmup: 2, reps: reps,
                        spec: ["op": "bert_train_step", "model": folder, "batch": B, "length": T, "lora": true],
                        setup: {
                            let model = try BertModel.load(folder: folder, labels: 2, backend: backend)
                            try model.attachLoRA(LoRAConfig(rank: 8, alpha: 16, dropout: 0.1, targets: [.query, .value]))
                            return try fineTuningStep(model, randomBatch(model, B, T))
                        },
                        flops: 2 * perLayer * layers)   // forward and the input gradients (frozen weights get none)
    let distill = Workload(name: "TinyBERT intermediate distillation step MPNet-base → 6 layers B=\(B) T=\(T)", unit: "ktok/s",
                           work: tokens * 1e6, warmup: 2, reps: reps,
                           spec: ["op": "distill_step", "model": folder, "batch": B, "length": T, "stage": "intermediate",
                                  "student_layers": 6],
                           setup: {
                               let teacher = try Classifier.load(folder: folder, labels: ["0", "1"], maxLength: T, backend: backend,
                                                                 inference: true)
                               let student = try Distillation.makeStudent(teacher: teacher, teacherFolder: folder, initFrom: .odd, layers: 6,
                                                                          backend: backend, seed: 1)
                               var loss = DistillationLoss(layerMap: .following(.odd, student: 6, teacher: config.layers))
                               loss.stage = .intermediate
                               let objective = try Distillation.objective(teacher: teacher, student: student, loss: loss, maxBatch: B, seed: 1)
                               let a = try BertActivations(config: student.model.config, labels: 2, maxBatch: B, maxLength: T, backend: backend)
                               student.load(encodings, labels: labels, into: a)
                               let losses = StepLosses(try backend.zeros(StepLosses.capacity), backend: backend)
                               return optimizerStep(try Optimizer(model: student.model, idle: objective.idleParameters),
                                                    learningRate: 5e-5) { step in
                                   student.model.zeroGradients()
                                   losses.reset()
                                   objective.step(a, batch: encodings, seed: UInt64(step), gradScale: 1, losses: losses, weight: 1)
                               }
                           },
                           flops: perLayer * (layers + 3 * 6))   // teacher forward, student forward and backward
    return [lora, distill]
}
