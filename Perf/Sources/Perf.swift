// The perf suite: `swift run -c release Perf --backend cpu [--json FILE] [--quick] [--filter TEXT]`
// (also `retort perf …`: the one binary scripts/gpu-check carries).
// Every workload is timed here (warm-up, repeats, median) and, in the same run, by a reference:
// numpy for sgemm, PyTorch CPU for the other ops when `import torch` works (Perf/reference),
// and Retort's own unfused composition for fused attention. Ratios > 1 mean Retort is faster.
import Backend
import Foundation

struct Options {
    var backend = "cpu"
    var json: String?
    var quick = false
    var filter: String?
    var precision = Precision.fp32
    var reference: String?
    var allReduce = false
    var python = ProcessInfo.processInfo.environment["RETORT_PERF_PYTHON"] ?? "python3"

    static let usage = """
        usage: Perf (or retort perf) [--backend cpu|cuda|auto] [--precision fp32|tf32|bf16|fp16] [--json FILE] [--quick] [--filter TEXT]
                    [--python PATH] [--reference FILE]
               mpirun -n N Perf --allreduce [--quick]
          --backend   device to measure (cpu, cuda or auto); the references run on the same device
          --precision GPU precision: fp32 (default), tf32, bf16 or fp16 (mixed precision)
          --json      also write one JSON object per line: name, value, unit, reference, ratio
          --quick     fewer repetitions (a smoke run; figures are noisier)
          --filter    only workloads whose name contains TEXT
          --python    interpreter for the references (default: $RETORT_PERF_PYTHON or python3)
          --reference the reference script (default: Perf/reference/reference.py of the source
                      tree, else reference.py beside the executable)
          --allreduce under mpirun: the data-parallel gradient all-reduce, GB/s per size
        """

    static func parse(_ args: [String]) -> Options {
        var o = Options()
        var i = 0
        func value(_ flag: String) -> String {
            i += 1
            guard i < args.count else { fail("\(flag) needs a value\n\(usage)") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--backend": o.backend = value("--backend")
            case "--json": o.json = value("--json")
            case "--quick": o.quick = true
            case "--allreduce": o.allReduce = true
            case "--filter": o.filter = value("--filter")
            case "--python": o.python = value("--python")
            case "--reference": o.reference = value("--reference")
            case "--precision":
                let text = value("--precision")
                guard let p = Precision(rawValue: text) else { fail("--precision must be fp32, tf32, bf16 or fp16, not \(text)") }
                o.precision = p
            case "-h", "--help": print(usage); exit(0)
            default: fail("unknown argument \(args[i])\n\(usage)")
            }
            i += 1
        }
        return o
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("Perf: \(message)\n".utf8))
    exit(2)
}

/// The suite's entry point: the Perf executable and `retort perf` call it with their arguments.
public enum PerfCommand {
    public static func main(_ arguments: [String]) {
        do { try run(arguments) } catch { fail("\(error)") }   // one line, never a trap with a backtrace
    }

    static func run(_ arguments: [String]) throws {
        let options = Options.parse(arguments)
        guard let choice = Devices.Choice(rawValue: options.backend) else { fail("--backend must be cpu, cuda or auto, not \(options.backend)") }
        // --allreduce: join the job first, so that each rank takes its own GPU (cuda:local_rank).
        if options.allReduce { try ProcessGroup.join() }
        let backend: Backend
        do {   // the registry the CLI uses; a missing OpenBLAS or GPU is one line, not a trap
            let made = try Devices.makeBackend(choice, precision: options.precision)
            backend = made.backend
            if let note = made.note { print("Perf: \(note)") }
        } catch {
            fail("--backend \(options.backend): \(error)")
        }
        if options.allReduce { return try AllReduceBench.run(backend, quick: options.quick) }
        print("Retort perf — \(backend.kind): \(backend.summary)")
        // Only the asked-for groups are built (--filter); every name a group asks about is noted,
        // so a workload built under a name its guard does not ask about is reported (a filter
        // would silently skip it).
        var asked = Set<String>()
        let wants = { (name: String) -> Bool in asked.insert(name); return options.filter.map { name.contains($0) } ?? true }
        var workloads = try makeWorkloads(backend, quick: options.quick, wants: wants)
            + makeModelWorkloads(backend, quick: options.quick, wants: wants) + makeDecoderWorkloads(backend, quick: options.quick, wants: wants)
            + makeRecurrentWorkloads(backend, quick: options.quick, wants: wants)
        for w in workloads where !w.hidden && !asked.contains(w.name) && options.filter == nil {
            FileHandle.standardError.write(Data("Perf: internal: \(w.name) is built without asking the filter\n".utf8))
        }
        // A kept workload's comparison (compareTo) is measured too, even when the filter leaves it out.
        if let filter = options.filter {
            let compared = Set(workloads.filter { $0.name.contains(filter) }.compactMap(\.compareTo))
            workloads = workloads.filter { $0.name.contains(filter) || compared.contains($0.name) }
        }
        if backend.kind == .cuda, backend.precision != .fp32 {   // the references in the same type (TF32, or autocast)
            for i in workloads.indices where workloads[i].spec.map({ sixteenBitReferences.contains($0["op"] as? String ?? "") }) ?? false {
                workloads[i].spec!["precision"] = backend.precision.rawValue
            }
        }

        var results: [Result] = []
        for w in workloads {
            var result: Result
            if let setup = w.setup {   // built now, freed after: its peak memory is its own
                let base = backend.memoryUse.inUse
                backend.resetPeakMemory()
                let run = try setup()
                result = Result(workload: w, ms: measure({ run(); backend.synchronize() }, warmup: w.warmup, reps: w.reps))
                result.peakBytes = backend.memoryUse.peak - base
            } else {
                result = Result(workload: w, ms: measure({ w.run(); backend.synchronize() }, warmup: w.warmup, reps: w.reps))
            }
            results.append(result)
            FileHandle.standardError.write(Data("  measured \(w.name): \(format(result.ms, 3)) ms\n".utf8))
        }
        // Comparisons between Retort's own workloads (fused vs unfused attention; a decode step vs
        // streaming the weights once): the reference is named after the workload it is.
        for i in results.indices {
            if let other = results[i].workload.compareTo, let ref = results.first(where: { $0.workload.name == other }) {
                let impl = other.hasSuffix("unfused ops") ? "Retort unfused ops" : "Retort: " + (other.split(separator: ":").last.map { String($0).trimmingCharacters(in: .whitespaces) } ?? other)
                results[i].reference = Reference(ms: ref.ms, impl: impl)
            }
        }
        let external = runReferences(workloads.filter { $0.spec != nil }, options: options, device: backend.kind.rawValue,
                                     threads: backend.kind == .cpu ? ProcessInfo.processInfo.activeProcessorCount : nil)
        for i in results.indices where results[i].reference == nil {
            results[i].reference = external[results[i].workload.name]
        }
        let peak = (backend as? CUDABackend)?.gpu.peakBandwidth
        if let peak { print("device memory bandwidth (theoretical): \(format(peak, 0)) GB/s") }
        printTable(results.filter { !$0.workload.hidden }, peakBandwidth: peak)
        printPeakMemory(results)
        if let cuda = backend as? CUDABackend, cuda.precision.halfType != nil { printMFU(results, gpu: cuda.gpu.name) }
        if let cuda = backend as? CUDABackend {
            print("GPU memory held by Retort: peak \(cuda.memoryUse.peak / (1 << 20)) MiB, reserved \(cuda.memoryUse.reserved / (1 << 20)) MiB")
        }
        if let path = options.json { writeJSON(results.filter { !$0.workload.hidden }, to: path) }
    }
}

/// Ops whose Retort side runs its matmuls (and attention) in TF32 or 16 bits at tf32/bf16/fp16,
/// so their references do too; the others (norms, losses, optimizer) are fp32 at every precision.
let sixteenBitReferences: Set<String> = ["sgemm", "attention_forward_backward", "bert_train_step", "bert_inference", "distill_step",
                                         "decoder_prefill", "decoder_generate", "decoder_lora_step"]

/// Median wall time of `reps` runs after `warmup` runs, in milliseconds.
func measure(_ body: () -> Void, warmup: Int, reps: Int) -> Double {
    for _ in 0..<warmup { body() }
    var times: [Double] = []
    for _ in 0..<reps {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    times.sort()
    return times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
}

func format(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
