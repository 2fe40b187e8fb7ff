// Decoder workloads on the real SmolLM2-135M-Instruct (its Q4_1 GGUF dequantised to fp32, from
// scripts/fetch-assets smollm2), beside transformers loading the same GGUF: prefill of a
// 128-token prompt at B=1, generating 32 tokens after it (greedy, KV cache), a LoRA causal-LM
// training step (r 8 on q_proj and v_proj, B=8, T=128, clip, AdamW) beside PyTorch + PEFT, and
// one decode step against its roofline: streaming every weight once from memory, measured in the
// same run (a sum of squares over the weight buffer), and one decode step at a 4,096-position
// context beside transformers' step against a cache as long. Skipped with a note when the GGUF is absent.
import Backend
import Foundation
import Models
import Train

func makeDecoderWorkloads(_ backend: Backend, quick: Bool, wants: (String) -> Bool = { _ in true }) throws -> [Workload] {
    let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
    let path = root + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    guard FileManager.default.fileExists(atPath: path) else {
        print("decoder workloads skipped: \(path) not found (run scripts/fetch-assets smollm2)")
        return []
    }
    let reps = quick ? 2 : 5, T = 128, new = 32, (B, trainT) = (8, 128), longT = 4096
    let names = (prefill: "SmolLM2-135M prefill B=1 T=\(T)", generate: "SmolLM2-135M generate \(new) tokens B=1 after T=\(T)",
                 decode: "SmolLM2-135M decode step B=1 at T=\(T) vs its roofline",
                 lora: "SmolLM2-135M LoRA r=8 q,v causal-LM step B=\(B) T=\(trainT)",
                 longDecode: "SmolLM2-135M decode step B=1 at T=\(longT) (long context)")
    let int8Names = (prefill: "SmolLM2-135M int8 prefill B=1 T=\(T) vs fp32", decode: "SmolLM2-135M int8 decode step B=1 at T=\(T) vs fp32")
    guard [names.prefill, names.generate, names.decode, names.lora, names.longDecode, int8Names.prefill, int8Names.decode].map(wants).contains(true)
    else { return [] }
    let model = try DecoderModel.load(path, backend: backend, inference: true)
    try model.packForInference()   // as retort generate runs it
    var state: UInt64 = 11
    func prompt(_ n: Int) -> [Int32] {
        (0..<n).map { _ in state = state &* 6_364_136_223_846_793_005 &+ 1; return Int32(1000 + (state >> 33) % 40000) }
    }
    let ids = prompt(T)
    var list: [Workload] = []
    // Prefill at B=1: the prompt's forward and the logits at its last token.
    let a = try DecoderActivations(config: model.config, maxBatch: 1, maxLength: T, backend: backend, inference: true, headRows: 1)
    a.load(ids: ids, mask: Array(repeating: 1, count: T), batch: 1, length: T, backend: backend)
    if wants(names.prefill) || wants(int8Names.prefill) {
        list.append(Workload(name: names.prefill, unit: "tok/s", work: Double(T) * 1e9, warmup: 2, reps: reps,
                             run: { model.forward(a); _ = backend.floats(model.lastTokenLogits(a)) },
                             spec: ["op": "decoder_prefill", "model": path, "length": T, "ids": ids.map(Int.init)]))
    }
    // The weights in int8 (generate --int8, or a retort quantize folder), where the backend has int8 kernels.
    let quantized: DecoderModel? = backend.int8Kernels != nil && [names.prefill, names.decode, int8Names.prefill, int8Names.decode].map(wants).contains(true)
        ? try DecoderModel.load(path, backend: backend, inference: true) : nil
    try quantized?.quantizeInt8()
    // The same prefill on the int8 weights (the prompt's rows on the int8 kernels where the backend takes them), beside the fp32 one.
    if let quantized, wants(names.prefill) || wants(int8Names.prefill) {
        list.append(Workload(name: int8Names.prefill, unit: "tok/s", work: Double(T) * 1e9, warmup: 2, reps: reps,
                             run: { quantized.forward(a); _ = backend.floats(quantized.lastTokenLogits(a)) }, compareTo: names.prefill))
    }
    // Generation: 32 greedy tokens after the prompt (prefill included), as transformers' generate.
    if wants(names.generate) { list.append(Workload(name: names.generate, unit: "tok/s", work: Double(new) * 1e9, warmup: 1,
                         reps: reps, run: {
        _ = try? model.generate([GenerationRequest(prompt: ids, maxNewTokens: new)], sampling: SamplingOptions(), endTokens: [])
    }, spec: ["op": "decoder_generate", "model": path, "length": T, "new_tokens": new, "ids": ids.map(Int.init)])) }
    // One decode step (the cache holds T tokens) against streaming the weights once.
    if wants(names.decode) || wants(int8Names.decode) {
        let cache = try KVCache(config: model.config, batch: 1, capacity: T + 1, backend: backend)
        _ = model.prefill(a, cache: cache)
        let buffers = try DecodeBuffers(config: model.config, batch: 1, backend: backend), logits = try backend.zeros(model.config.vocabSize)
        let sum = try backend.zeros(1)
        let megabytes = Double(model.weights.count * 4) / 1e6
        list.append(Workload(name: "SmolLM2-135M: stream the weights once (\(Int(megabytes)) MB, a decode step's roofline)", unit: "tok/s", work: 1e9,
                             warmup: 2, reps: reps, run: { backend.sumOfSquares(sum, model.weights, count: model.weights.count); _ = backend.floats(sum) },
                             hidden: true))
        list.append(Workload(name: names.decode, unit: "tok/s", work: 1e9, warmup: 2, reps: 4 * reps,
                             run: {
            cache.lengths = [T]
            _ = model.step([42], cache: cache, buffers: buffers, logits: logits)
        }, compareTo: "SmolLM2-135M: stream the weights once (\(Int(megabytes)) MB, a decode step's roofline)"))
    }
    // The same decode step with the weights in int8 (generate --int8), beside the fp32 step.
    if let quantized, wants(names.decode) || wants(int8Names.decode) {
        let cache = try KVCache(config: quantized.config, batch: 1, capacity: T + 1, backend: backend)
        _ = quantized.prefill(a, cache: cache)
        let buffers = try DecodeBuffers(config: quantized.config, batch: 1, backend: backend), logits = try backend.zeros(quantized.config.vocabSize)
        list.append(Workload(name: int8Names.decode, unit: "tok/s", work: 1e9, warmup: 2, reps: 4 * reps, run: {
            cache.lengths = [T]
            _ = quantized.step([42], cache: cache, buffers: buffers, logits: logits)
        }, compareTo: names.decode))
    }
    // One decode step at a long context, where attention over the cache outweighs the weights: the
    // cache holds 4,096 positions of random keys and values (no prefill), as the reference's does.
    if wants(names.longDecode) {
        list.append(Workload(name: names.longDecode, unit: "tok/s", work: 1e9, warmup: 2, reps: 2 * reps,
                             spec: ["op": "decoder_decode_step", "model": path, "length": longT], setup: {
            let cache = try KVCache(config: model.config, batch: 1, capacity: longT + 1, backend: backend)
            for (layer, tensor) in (cache.keys + cache.values).enumerated() {
                backend.copy(tensor, try random(backend, tensor.count, seed: UInt64(layer + 1)))
            }
            let buffers = try DecodeBuffers(config: model.config, batch: 1, backend: backend), logits = try backend.zeros(model.config.vocabSize)
            return {
                cache.lengths = [longT]
                _ = model.step([42], cache: cache, buffers: buffers, logits: logits)
            }
        }))
    }
    // LoRA causal-LM step, B=8, T=128.
    if wants(names.lora) {
        let trainer = try DecoderModel.load(path, backend: backend)
        try trainer.attachLoRA(LoRAConfig(rank: 8, alpha: 16, dropout: 0.05, targets: [.qProj, .vProj]))
        let batch = try DecoderActivations(config: trainer.config, maxBatch: B, maxLength: trainT, backend: backend)
        let batchIds = prompt(B * trainT)
        batch.load(ids: batchIds, mask: Array(repeating: 1, count: B * trainT), batch: B, length: trainT, backend: backend)
        let run = optimizerStep(try Optimizer(decoder: trainer), learningRate: 1e-4) { step in
            trainer.zeroGradients()
            trainer.forward(batch, training: true, seed: UInt64(step))
            trainer.lossBackward(batch)
        }
        list.append(Workload(name: names.lora, unit: "tok/s", work: Double(B * trainT) * 1e9, warmup: 1, reps: quick ? 2 : 3, run: run, spec: ["op": "decoder_lora_step", "model": path, "batch": B, "length": trainT, "ids": batchIds.map(Int.init)]))
    }
    return list
}
