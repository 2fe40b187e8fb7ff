// The perf suite: `swift run -c release Perf --backend cpu [--json FILE] [--quick] [--filter TEXT]`
// (also `retort perf …`: the one binary scripts/gpu-check carries).
// Every workload is timed here (warm-up, repeats, median) and, right after, by a reference:
// numpy for sgemm, PyTorch CPU for the other ops when `import torch` works (Perf/reference),
// and Retort's own unfused composition for fused attention. Ratios > 1 mean Retort is faster.
// `--rounds N` measures both sides N times in alternating order and reports the median ratio.
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
    var rounds = 1
    var python = ProcessInfo.processInfo.environment["RETORT_PERF_PYTHON"] ?? "python3"

    static let usage = """
        usage: Perf (or retort perf) [--backend cpu|cuda|auto] [--precision fp32|tf32|bf16|fp16] [--json FILE] [--quick] [--filter TEXT]
                    [--rounds N] [--python PATH] [--reference FILE]
               mpirun -n N Perf --allreduce [--quick]
          --backend   device to measure (cpu, cuda or auto); the references run on the same device
          --precision GPU precision: fp32 (default), tf32, bf16 or fp16 (mixed precision)
          --json      also write one JSON object per line: name, value, unit, reference, ratio
          --quick     fewer repetitions (a smoke run; figures are noisier)
          --filter    only workloads whose name contains TEXT
          --rounds    measure each workload and its reference N times in turn (default 1); the
                      ratio is the median round's, and the table shows the lowest and highest
          --python    interpreter for the references (default: $RETORT_PERF_PYTHON or python3)
          --reference the reference script (default: Perf/reference/reference.py of the source
                      tree, else reference.py beside the executable); it prints {"ready": true}
                      once started, then one JSON line for each spec line it reads
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
            case "--rounds":
                let text = value("--rounds")
                guard let n = Int(text), (1...50).contains(n) else { fail("--rounds must be a whole number from 1 to 50, not \(text)") }
                o.rounds = n
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

        // Each workload: Retort's side, then its reference right after (the reference script, or
        // the Retort workload it is compared with), in `rounds` rounds whose order alternates.
        let references = workloads.contains { $0.spec != nil }
            ? ReferenceRunner(options: options, device: backend.kind.rawValue,
                              threads: backend.kind == .cpu ? ProcessInfo.processInfo.activeProcessorCount : nil) : nil
        var results: [Result] = []
        for w in workloads {
            let compared = w.compareTo.flatMap { name in results.first { $0.workload.name == name } }
            let result = try measureInTurn(w, backend: backend, rounds: options.rounds, references: references, compared: compared)
            results.append(result)
            var line = "  measured \(w.name): \(format(result.ms, 3)) ms"
            if let r = result.reference, let ratio = result.ratio { line += "; reference \(format(r.ms, 3)) ms, ratio \(format(ratio, 2))x" }
            FileHandle.standardError.write(Data((line + "\n").utf8))
            // Rewritten after every workload, so a run stopped early (a time limit) keeps what it measured.
            if let path = options.json { writeJSON(results.filter { !$0.workload.hidden }, to: path) }
        }
        references?.finish()
        let peak = (backend as? CUDABackend)?.gpu.peakBandwidth
        if let peak { print("device memory bandwidth (theoretical): \(format(peak, 0)) GB/s") }
        printTable(results.filter { !$0.workload.hidden }, peakBandwidth: peak)
        printPeakMemory(results)
        if let cuda = backend as? CUDABackend, cuda.precision.halfType != nil { printMFU(results, gpu: cuda.gpu.name) }
        if let cuda = backend as? CUDABackend {
            print("GPU memory held by Retort: peak \(cuda.memoryUse.peak / (1 << 20)) MiB, reserved \(cuda.memoryUse.reserved / (1 << 20)) MiB")
        }
        if let path = options.json { print("wrote \(path)") }
    }

    /// One workload and its reference, in `rounds` rounds whose order alternates: the reference
    /// script's run of the same spec, or the Retort workload it is compared with (measured again
    /// in each round when there are several, else the result measured just before).
    static func measureInTurn(_ w: Workload, backend: Backend, rounds: Int, references: ReferenceRunner?,
                              compared: Result?) throws -> Result {
        let base = backend.memoryUse.inUse
        if w.setup != nil { backend.resetPeakMemory() }
        let run = try w.setup?() ?? w.run   // a setup is built now and freed after: its peak memory is its own
        var mine: [Double] = [], theirs: [Double?] = []
        var reference = compared.map { compared -> Reference in   // another Retort workload, named after what it is
            let other = compared.workload.name
            return Reference(ms: compared.ms, impl: other.hasSuffix("unfused ops") ? "Retort unfused ops"
                             : "Retort: " + (other.split(separator: ":").last.map { String($0).trimmingCharacters(in: .whitespaces) } ?? other))
        }
        let twoSides = compared.map { _ in rounds > 1 } ?? (w.spec != nil && references?.isRunning == true)
        for round in 0..<rounds {
            // Later rounds warm up once: the caches and the allocator are warm already.
            let warmup = round == 0 ? w.warmup : min(1, w.warmup)
            let measureMine = { mine.append(measure({ run(); backend.synchronize() }, warmup: warmup, reps: w.reps)) }
            let measureTheirs = {
                if let compared {   // compared workloads are built in advance (none has a setup)
                    theirs.append(rounds > 1 ? measure({ compared.workload.run(); backend.synchronize() }, warmup: min(1, compared.workload.warmup),
                                                       reps: compared.workload.reps) : compared.ms)
                } else {
                    let measured = references?.measure(w, warmup: warmup)
                    if reference == nil { reference = measured }
                    theirs.append(measured?.ms)
                }
            }
            // A pause between the sides (when there are two), and the order turned each round.
            if round % 2 == 0 { measureMine(); if twoSides { letThreadsSettle() }; measureTheirs() }
            else { measureTheirs(); if twoSides { letThreadsSettle() }; measureMine() }
            if twoSides { letThreadsSettle() }
        }
        if w.spec != nil, compared == nil { references?.release() }
        var result = Result(workload: w, rounds: mine)
        let measured = theirs.compactMap { $0 }
        if let reference, !measured.isEmpty {
            result.reference = Reference(ms: median(measured), impl: reference.impl, peakBytes: reference.peakBytes)
            result.referenceRounds = theirs
        }
        if w.setup != nil { result.peakBytes = backend.memoryUse.peak - base }
        return result
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
    return median(times)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Between the two sides: a BLAS's or OpenMP's worker threads spin for a while after their last
/// call; this lets them go to sleep before the other side starts its clock.
func letThreadsSettle() { usleep(200_000) }

func format(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
