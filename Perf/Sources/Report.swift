// The perf table and the JSON lines.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Reference {
    let ms: Double
    let impl: String
    var peakBytes: Int? = nil
}

struct Result {
    let workload: Workload
    let rounds: [Double]            // Retort's median time in each round, ms
    var reference: Reference?       // its ms: the median of referenceRounds
    var referenceRounds: [Double?] = []   // nil: the reference did not run in that round
    var peakBytes: Int? = nil   // workloads with a setup: the most device memory they held

    var ms: Double { median(rounds) }
    /// Throughput in the workload's unit (GFLOP/s or GB/s), or ms when it has no work count.
    var value: Double { workload.work > 0 ? workload.work / (ms * 1e-3) / 1e9 : ms }
    var referenceValue: Double? {
        guard let reference else { return nil }
        return workload.work > 0 ? workload.work / (reference.ms * 1e-3) / 1e9 : reference.ms
    }
    /// Each round's ratio, of the two sides measured back to back (rounds both sides ran).
    var roundRatios: [Double] { zip(referenceRounds, rounds).compactMap { reference, mine in reference.map { $0 / mine } } }
    /// > 1: Retort is faster. The median of the rounds' ratios.
    var ratio: Double? { roundRatios.isEmpty ? nil : median(roundRatios) }
}

/// With `peakBandwidth` (GB/s, a GPU's), GB/s rows also show their share of it.
func printTable(_ results: [Result], peakBandwidth: Double? = nil) {
    let nameWidth = max(40, results.map(\.workload.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, n - s.count))
        return right ? fill + s : s + fill
    }
    // With --rounds: each row's lowest and highest round ratio beside the median.
    let rangeWidth = results.contains { $0.roundRatios.count > 1 } ? 12 : 0
    func range(_ r: Result) -> String {
        guard rangeWidth > 0 else { return "" }
        let ratios = r.roundRatios
        return pad(ratios.count > 1 ? format(ratios.min()!, 2) + "–" + format(ratios.max()!, 2) : "—", rangeWidth, right: true) + "  "
    }
    print(pad("workload", nameWidth) + "  " + pad("Retort", 10, right: true) + "  " + pad("unit", 8) + "  "
          + pad("reference", 10, right: true) + "  " + pad("ratio", 6, right: true) + "  "
          + (rangeWidth > 0 ? pad("ratio range", rangeWidth, right: true) + "  " : "") + "reference measured with")
    for r in results {
        let ref = r.referenceValue.map { format($0, 1) } ?? "—"
        let ratio = r.ratio.map { format($0, 2) + "x" } ?? "—"
        let roofline = peakBandwidth.map { r.workload.unit == "GB/s" ? "  [\(format(100 * r.value / $0, 0))% of peak]" : "" } ?? ""
        print(pad(r.workload.name, nameWidth) + "  " + pad(format(r.value, 1), 10, right: true) + "  " + pad(r.workload.unit, 8)
              + "  " + pad(ref, 10, right: true) + "  " + pad(ratio, 6, right: true) + "  " + range(r) + (r.reference?.impl ?? "no reference")
              + roofline)
    }
    let rounds = results.map(\.rounds.count).max() ?? 1
    print("ratio > 1: Retort is faster. Medians; each reference measured right after Retort's side of the same workload"
          + (rounds > 1 ? ", in \(rounds) alternating rounds (ratio: the median round's)." : "."))
}

/// Peak device memory of the workloads that measure it, beside the reference's.
func printPeakMemory(_ results: [Result]) {
    let measured = results.filter { $0.peakBytes != nil }
    guard !measured.isEmpty else { return }
    print("peak memory of a step (model, optimizer state, activations, workspace):")
    for r in measured {
        let mine = Double(r.peakBytes!) / 1048576
        var line = "  \(r.workload.name): Retort \(format(mine, 0)) MiB"
        if let theirs = r.reference?.peakBytes {
            line += ", reference \(format(Double(theirs) / 1048576, 0)) MiB (Retort/reference \(format(mine * 1048576 / Double(theirs), 2)))"
        }
        print(line)
    }
}

/// Dense bf16/fp16 tensor-core peaks with fp32 accumulation (TFLOP/s), from NVIDIA's datasheets.
let tensorCorePeaks: [(name: String, tflops: Double)] = [
    ("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("A100", 312), ("L40S", 362), ("RTX 4090", 165), ("RTX 3090", 71),
]

/// Model FLOPs utilisation of the workloads that count their FLOPs, when the GPU's peak is known.
func printMFU(_ results: [Result], gpu: String) {
    guard let peak = tensorCorePeaks.first(where: { gpu.contains($0.name) }) else {
        print("MFU: no tensor-core peak on record for \(gpu)")
        return
    }
    for r in results {
        guard let flops = r.workload.flops else { continue }
        let achieved = flops / (r.ms * 1e-3) / 1e12
        var line = "MFU \(r.workload.name): \(format(100 * achieved / peak.tflops, 1))% (\(format(achieved, 1)) of \(format(peak.tflops, 0)) TFLOP/s, \(peak.name) dense 16-bit)"
        if let reference = r.reference { line += "; reference \(format(100 * flops / (reference.ms * 1e-3) / 1e12 / peak.tflops, 1))%" }
        print(line)
    }
}

func writeJSON(_ results: [Result], to path: String) {
    var lines = ""
    for r in results {
        var object: [String: Any] = ["name": r.workload.name, "value": r.value, "unit": r.workload.unit, "ms": r.ms]
        if let reference = r.referenceValue, let ratio = r.ratio, let impl = r.reference?.impl {
            object["reference"] = reference
            object["ratio"] = ratio
            object["reference_impl"] = impl
            object["reference_ms"] = r.reference!.ms
            if r.roundRatios.count > 1 { object["round_ratios"] = r.roundRatios }
            if let peak = r.reference?.peakBytes { object["reference_peak_bytes"] = peak }
        }
        if let peak = r.peakBytes { object["peak_bytes"] = peak }
        if let flops = r.workload.flops { object["flops"] = flops }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { continue }
        lines += String(decoding: data, as: UTF8.self) + "\n"
    }
    // Write next to the target, then rename: a reader never sees a half-written file.
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
    do {
        try Data(lines.utf8).write(to: temporary)
    } catch {
        fail("could not write \(temporary.path): \(error.localizedDescription)")
    }
    guard rename(temporary.path, url.path) == 0 else {
        fail("could not move \(temporary.path) to \(path): \(String(cString: strerror(errno)))")
    }
}

/// Perf/reference/reference.py as one long-lived process: a spec line in, a result line out. Each
/// workload's reference is measured right after Retort's side of it (with --rounds, in turns), so
/// both meet the machine in the same state; a reference measured minutes later, once a shared
/// host's load had changed, moved a ratio by up to 2× on the 2-core VM.
final class ReferenceRunner {
    private let process = Process()
    private let input: FileHandle, output: FileHandle
    private var pending = Data()
    private var alive = true
    var isRunning: Bool { alive }
    private var answered = false
    private var missing: [String] = []   // why some references were not measured, each once

    /// nil (with a line saying why) when the script or the interpreter is not there.
    init?(options: Options, device: String, threads: Int?) {
        let sourceTree = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("reference/reference.py").path
        let besideExecutable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("reference.py").path
        let script = options.reference
            ?? [sourceTree, besideExecutable].first { FileManager.default.fileExists(atPath: $0) } ?? sourceTree
        guard FileManager.default.fileExists(atPath: script) else {
            print("references skipped: \(script) not found")
            return nil
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [options.python, script, "--device", device] + (threads.map { ["--threads", "\($0)"] } ?? [])
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        signal(SIGPIPE, SIG_IGN)   // a script that died is noticed at the next read, not by a signal
        do { try process.run() } catch {
            print("references skipped: could not run \(options.python): \(error)")
            return nil
        }
        // Nothing is measured while the script still imports torch (seconds of a core's time):
        // it says {"ready": true} first. A script that never does is waited for a minute at most.
        if awaitReply({ $0["ready"] != nil }, before: Date().addingTimeInterval(60)) == nil && alive {
            print("the reference script did not say it was ready within 60 s; measuring anyway")
        }
    }

    /// The reference's median time for `w` (`warmup` runs first), or nil when it has none here.
    func measure(_ w: Workload, warmup: Int) -> Reference? {
        guard alive, var spec = w.spec else { return nil }
        spec["name"] = w.name
        spec["warmup"] = warmup
        spec["reps"] = w.reps
        if w.setup != nil { spec["peak"] = true }   // the reference measures its peak memory too
        guard let object = exchange(spec, until: { ($0["name"] as? String) == w.name }) else { return nil }
        if let ms = object["ms"] as? Double, let impl = object["impl"] as? String {
            return Reference(ms: ms, impl: impl, peakBytes: (object["peak_bytes"] as? NSNumber)?.intValue)
        }
        if let error = object["error"] as? String, !missing.contains(error) { missing.append(error) }
        return nil
    }

    /// Lets the script drop the workload it keeps between rounds (a model, its optimizer state).
    func release() {
        _ = exchange(["op": "release"], until: { $0["released"] != nil })
    }

    /// Ends the script and prints why references were missing.
    func finish() {
        try? input.close()
        process.waitUntilExit()   // its output has ended (or ends now, at the end of its input)
        signal(SIGPIPE, SIG_DFL)
        if !alive {
            print(answered ? "reference script ended early (status \(process.terminationStatus)); later workloads have no reference"
                           : "references skipped: the reference script ended before answering (status \(process.terminationStatus))")
        } else if process.terminationStatus != 0 {
            print("reference script exited with status \(process.terminationStatus)")
        }
        for reason in missing { print("some references not measured: \(reason)") }
    }

    /// Sends one JSON line and reads lines until one satisfies `until` (anything else the script
    /// prints on stdout is skipped); nil once the script has gone.
    private func exchange(_ request: [String: Any], until done: ([String: Any]) -> Bool) -> [String: Any]? {
        guard alive, let data = try? JSONSerialization.data(withJSONObject: request) else { return nil }
        do { try input.write(contentsOf: data + Data("\n".utf8)) } catch { alive = false; return nil }
        let reply = awaitReply(done)
        if reply != nil { answered = true }
        return reply
    }

    /// Reads lines until one satisfies `done`: nil once the script has gone (alive turns false)
    /// or, with a deadline, when it passes first.
    private func awaitReply(_ done: ([String: Any]) -> Bool, before deadline: Date? = nil) -> [String: Any]? {
        while let line = nextLine(before: deadline) {
            if let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any], done(object) { return object }
        }
        return nil
    }

    private func nextLine(before deadline: Date?) -> Data? {
        while true {
            if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[pending.startIndex..<end]
                pending = Data(pending[(end + 1)...])
                return Data(line)
            }
            if let deadline {   // wait for output only until the deadline
                var descriptor = pollfd(fd: output.fileDescriptor, events: Int16(POLLIN), revents: 0)
                let left = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
                guard left > 0, poll(&descriptor, 1, left) > 0 else { return nil }
            }
            let more = output.availableData   // blocks until the script writes or exits
            if more.isEmpty { alive = false; return nil }
            pending += more
        }
    }
}
