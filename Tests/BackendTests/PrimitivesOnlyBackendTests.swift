// A new backend starts from the primitives: PrimitivesOnlyBackend forwards only those to the CPU
// backend and takes every fused op (attention forward and backward, the attention-score loss,
// the LoRA branch) from the composed defaults (Sources/Backend/ComposedOps.swift). It passes
// every op case and the model cases (tiny BERT and MPNet gradients, LoRA, the real MiniLM
// logits when fetched) against the CPU backend's fused kernels.
import Backend
import Conformance
import XCTest

final class PrimitivesOnlyBackend: Backend {
    let cpu: CPUBackend
    init() throws { cpu = try CPUBackend() }

    var kind: DeviceKind { .cpu }
    var summary: String { "the CPU's primitives, composed defaults for every fused op" }
    var precision: Precision { .fp32 }
    let scratchBuffers = ScratchBuffers()
    func allocate(_ count: Int, _ dtype: DType) throws -> Tensor { try cpu.allocate(count, dtype) }
    func runUpload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) { cpu.runUpload(dst, src) }
    func runDownload(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) { cpu.runDownload(dst, src) }
    func runCopy(_ dst: Tensor, _ src: Tensor) { cpu.runCopy(dst, src) }
    func runFill(_ dst: Tensor, _ value: Float) { cpu.runFill(dst, value) }
    func synchronize() {}
    var memoryUse: MemoryUse { cpu.memoryUse }
    func resetPeakMemory() { cpu.resetPeakMemory() }
    func workspaceBytes(matmuls: [Gemm]) -> Int { 0 }

    func runMatmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) { cpu.runMatmul(c, a, b, bias: bias, g) }
    func runBiasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        cpu.runBiasBackward(dBias, dOut: dOut, rows: rows, channels: channels)
    }
    func runEmbeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?, word: Tensor, position: Tensor, type: Tensor?,
                             _ s: EmbeddingShape) {
        cpu.runEmbeddingForward(out, ids: ids, positions: positions, types: types, word: word, position: position, type: type, s)
    }
    func runEmbeddingBackward(dWord: Tensor?, dPosition: Tensor?, dType: Tensor?, dOut: Tensor, ids: Tensor, positions: Tensor,
                              types: Tensor?, segments: EmbeddingSegments, _ s: EmbeddingShape) {
        cpu.runEmbeddingBackward(dWord: dWord, dPosition: dPosition, dType: dType, dOut: dOut, ids: ids, positions: positions, types: types,
                                 segments: segments, s)
    }
    func runLayerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor, rows: Int,
                             channels: Int, eps: Float) {
        cpu.runLayerNormForward(out, mean: mean, rstd: rstd, x, weight: weight, bias: bias, rows: rows, channels: channels, eps: eps)
    }
    func runLayerNormBackward(dx: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, mean: Tensor,
                              rstd: Tensor, rows: Int, channels: Int) {
        cpu.runLayerNormBackward(dx: dx, dWeight: dWeight, dBias: dBias, dOut: dOut, x, weight: weight, mean: mean, rstd: rstd,
                                 rows: rows, channels: channels)
    }
    func runRMSNormForward(_ out: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, rows: Int, channels: Int, eps: Float) {
        cpu.runRMSNormForward(out, rstd: rstd, x, weight: weight, rows: rows, channels: channels, eps: eps)
    }
    func runRMSNormBackward(dx: Tensor, dWeight: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, rstd: Tensor, rows: Int,
                            channels: Int) {
        cpu.runRMSNormBackward(dx: dx, dWeight: dWeight, dOut: dOut, x, weight: weight, rstd: rstd, rows: rows, channels: channels)
    }
    func runDecodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape) {
        cpu.runDecodeAttention(out, q: q, keyCache: keyCache, valueCache: valueCache, lengths: lengths, s)
    }
    func runRoPE(_ out: Tensor, _ x: Tensor, positions: Tensor, inverseFrequencies: Tensor, _ s: RoPEShape, backward: Bool) {
        cpu.runRoPE(out, x, positions: positions, inverseFrequencies: inverseFrequencies, s, backward: backward)
    }
    func runSwiGLUForward(_ out: Tensor, gate: Tensor, up: Tensor, count: Int) { cpu.runSwiGLUForward(out, gate: gate, up: up, count: count) }
    func runSwiGLUBackward(dGate: Tensor, dUp: Tensor, dOut: Tensor, gate: Tensor, up: Tensor, count: Int) {
        cpu.runSwiGLUBackward(dGate: dGate, dUp: dUp, dOut: dOut, gate: gate, up: up, count: count)
    }
    func runGeluForward(_ out: Tensor, _ x: Tensor, count: Int, tanh: Bool) { cpu.runGeluForward(out, x, count: count, tanh: tanh) }
    func runGeluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int, tanh: Bool) {
        cpu.runGeluBackward(dx: dx, dOut: dOut, x, count: count, tanh: tanh)
    }
    func runTanhForward(_ out: Tensor, _ x: Tensor, count: Int) { cpu.runTanhForward(out, x, count: count) }
    func runTanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) { cpu.runTanhBackward(dx: dx, dOut: dOut, out: out, count: count) }
    func runDropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) { cpu.runDropout(out, x, count: count, p: p, seed: seed) }
    func runRecurrentForward(_ h: Tensor, c: Tensor?, y: Tensor, saved: Tensor?, xGates: Tensor, hGates: Tensor, hPrev: Tensor,
                             cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        cpu.runRecurrentForward(h, c: c, y: y, saved: saved, xGates: xGates, hGates: hGates, hPrev: hPrev, cPrev: cPrev, lengths: lengths, s)
    }
    func runRecurrentBackward(dXGates: Tensor, dHGates: Tensor?, dhPrev: Tensor, dcPrev: Tensor?, dY: Tensor, dh: Tensor, dc: Tensor?,
                              saved: Tensor?, h: Tensor, c: Tensor?, hPrev: Tensor, cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        cpu.runRecurrentBackward(dXGates: dXGates, dHGates: dHGates, dhPrev: dhPrev, dcPrev: dcPrev, dY: dY, dh: dh, dc: dc, saved: saved,
                                 h: h, c: c, hPrev: hPrev, cPrev: cPrev, lengths: lengths, s)
    }
    func runSequencePoolForward(_ out: Tensor, argmax: Tensor?, _ y: Tensor, lengths: Tensor, _ s: PoolShape) {
        cpu.runSequencePoolForward(out, argmax: argmax, y, lengths: lengths, s)
    }
    func runSequencePoolBackward(dY: Tensor, dOut: Tensor, argmax: Tensor?, lengths: Tensor, _ s: PoolShape) {
        cpu.runSequencePoolBackward(dY: dY, dOut: dOut, argmax: argmax, lengths: lengths, s)
    }
    func runMaskedSoftmaxForward(_ probs: Tensor, lse: Tensor?, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        cpu.runMaskedSoftmaxForward(probs, lse: lse, scores: scores, mask: mask, bias: bias, s)
    }
    func runMaskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        cpu.runMaskedSoftmaxBackward(dScores: dScores, dProbs: dProbs, probs: probs, s)
    }
    func runMaskedScores(_ scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) { cpu.runMaskedScores(scores, mask: mask, bias: bias, s) }
    func runCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int, gradScale: Float) {
        cpu.runCrossEntropy(loss, dLogits: dLogits, logits: logits, labels: labels, rows: rows, classes: classes, gradScale: gradScale)
    }
    func runSoftCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                             temperature: Float, gradScale: Float) {
        cpu.runSoftCrossEntropy(loss, dLogits: dLogits, logits: logits, teacher: teacher, rows: rows, classes: classes,
                                temperature: temperature, gradScale: gradScale)
    }
    func runMSE(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        cpu.runMSE(loss, dA: dA, a, b, count: count, gradScale: gradScale)
    }
    func runCosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        cpu.runCosine(loss, dA: dA, a, b, rows: rows, channels: channels, gradScale: gradScale)
    }
    func runAdamW(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        cpu.runAdamW(params, grads: grads, m: m, v: v, count: count, h, step: step)
    }
    func runSumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) { cpu.runSumOfSquares(out, x, count: count) }
    func runScale(_ x: Tensor, count: Int, by factor: Float) { cpu.runScale(x, count: count, by: factor) }
    func runAxpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) { cpu.runAxpy(y, x, count: count, alpha: alpha) }
    func runCast(_ dst: Tensor, _ src: Tensor, count: Int) { cpu.runCast(dst, src, count: count) }
}

final class PrimitivesOnlyBackendTests: XCTestCase {
    func testEveryOpCaseAndModelCasePassesOnTheComposedDefaults() throws {
        let candidate = try PrimitivesOnlyBackend(), reference = try CPUBackend()
        var results = Conformance.runOps(candidate: candidate, reference: reference)
        XCTAssertGreaterThan(results.count, 60)
        results += ModelCases.run(candidate: candidate, reference: reference, golden: ConformanceTests.golden, assets: ConformanceTests.assets)
        results += DecoderCases.run(candidate: candidate, reference: reference, golden: ConformanceTests.golden, assets: ConformanceTests.assets)
        for r in results where r.skipped { print("skipped: \(r.name): \(r.detail)") }
        for r in results where !r.passed { XCTFail("\(r.name): \(r.detail)") }
    }
}
