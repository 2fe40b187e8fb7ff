// `Perf --allreduce` under mpirun: the gradient all-reduce Retort's data-parallel training runs
// on the CPU (ProcessGroup.sumNow: Open MPI's blocking MPI_Allreduce, on the gradient thread),
// timed per size, beside the non-blocking one (startSum + wait: the small collectives, and the
// path without a gradient thread). Rank 0 prints median times, the algorithm bandwidth (bytes
// summed / time) and the bus bandwidth (× 2(n−1)/n: what each rank sends and receives, NCCL's
// convention, comparable across job sizes).
import Backend
import Foundation

enum AllReduceBench {
    static func run(_ backend: Backend, quick: Bool) throws {
        guard let group = ProcessGroup.world else {
            fail("--allreduce runs under mpirun with 2 or more processes, e.g. mpirun -n 2 Perf --allreduce")
        }
        defer { ProcessGroup.leave() }
        // 1 MiB, 16 MiB, and all-MiniLM-L6-v2's gradient (22.7 M floats, 91 MB).
        let sizes = [1 << 18, 1 << 22, 22_713_219]
        if group.isPrimary {
            print("all-reduce (sum, in place, fp32) over \(group.size) ranks on \(backend.kind), \(group.library), \(ProcessInfo.processInfo.activeProcessorCount) CPUs on this machine")
            print("| elements | MB | ms (median) | algorithm GB/s | bus GB/s | non-blocking ms |")
            print("|---:|---:|---:|---:|---:|---:|")
        }
        for count in sizes {
            let t = try backend.tensor((0..<count).map { Float($0 % 97) * 0.01 }, .f32)
            func time(_ body: () throws -> Void) throws -> Double {
                var times: [Double] = []
                for rep in 0..<(quick ? 4 : 12) {
                    var barrier = [0.0]
                    try group.allReduce(&barrier, what: "the barrier")
                    let start = DispatchTime.now().uptimeNanoseconds
                    try body()
                    var slowest = [Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6]
                    try group.allReduce(&slowest, .max, what: "the timing")
                    if rep > 0 { times.append(slowest[0]) }   // the first is a warm-up
                }
                return times.sorted()[times.count / 2]
            }
            let cpu = backend.kind == .cpu
            // CUDA: ProcessGroup.sum, as training sums (NCCL, or through host memory).
            let ms = try time { cpu ? try group.sumNow(t, what: "the benchmark all-reduce") : try group.sum([t], backend: backend, what: "the benchmark all-reduce") }
            let nonBlocking = cpu ? try time {
                var requests = try group.startSum(t, what: "the benchmark all-reduce")
                try group.wait(&requests)
            } : .nan
            let bytes = Double(count * 4)
            let algorithm = bytes / (ms / 1e3) / 1e9, bus = algorithm * 2 * Double(group.size - 1) / Double(group.size)
            if group.isPrimary {
                print(String(format: "| %d | %.1f | %.2f | %.2f | %.2f | %.2f |", count, bytes / 1e6, ms, algorithm, bus, nonBlocking))
            }
        }
        if group.isPrimary, let transport = group.deviceTransport { print("CUDA tensors summed: \(transport)") }
    }
}
