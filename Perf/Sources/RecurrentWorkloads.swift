// Recurrent students: one bidirectional LSTM layer forward+backward at the BiLSTM-distillation
// shape (B=32, T=64, 300 inputs, 300 hidden per direction; every sequence full length) beside
// torch.nn.LSTM on the same sizes, and the same for a GRU beside torch.nn.GRU.
// FLOPs counted: the gate matmuls only — forward 2·T·B·G·H·(In + H) per direction, backward twice that.
import Backend
import Foundation
import Models

func makeRecurrentWorkloads(_ backend: Backend, quick: Bool, wants: (String) -> Bool = { _ in true }) throws -> [Workload] {
    let (B, T, In, H) = (32, 64, 300, 300)
    var list: [Workload] = []
    for cell in [RecurrentCell.lstm, .gru] {
        let name = "\(cell.torchName) layer fwd+bwd B=\(B) T=\(T) In=\(In) H=\(H) bidirectional"
        guard wants(name) else { continue }
        list.append(Workload(name: name, unit: "GFLOP/s", work: 3.0 * 2 * 2.0 * Double(T * B * cell.gates * H * (In + H)), reps: quick ? 3 : 10,
                             spec: ["op": "recurrent_forward_backward", "cell": cell.torchName, "batch": B, "length": T, "input": In,
                                    "hidden": H], setup: {
            let config = RecurrentConfig(cell: cell, vocabSize: 2, embeddingSize: In, hiddenSize: H, layers: 1, bidirectional: true,
                                         pooling: .max, headHiddenSize: 1, padTokenId: 0)
            let model = try RecurrentModel(config: config, labels: 2, backend: backend)
            let a = try RecurrentActivations(config: config, labels: 2, maxBatch: B, maxLength: T, backend: backend)
            a.load(Array(repeating: Array(repeating: 1, count: T), count: B), pad: 0, backend: backend)
            let x = try random(backend, T * B * In), dOutput = try random(backend, T * B * 2 * H, seed: 2), dX = try backend.zeros(T * B * In)
            let layer = model.layers[0], arena = a.layers[0]
            return {
                layer.forward(backend, arena, x: x, lengths: a.lengths, batch: B, length: T)
                layer.backward(backend, arena, dOutput: dOutput, dX: dX, x: x, lengths: a.lengths, batch: B, length: T)
                backend.synchronize()
            }
        }))
    }
    return list
}
