// The perf table and the JSON lines.
import Foundation

struct Reference {
    let ms: Double
    let impl: String
    var peakBytes: Int? = nil
}

struct Result {
    let workload: Workload
    let ms: Double
    var reference: Reference?
    var peakBytes: Int? = nil   // workloads with a setup: the most device memory they held

    /// Throughput in the workload's unit (GFLOP/s or GB/s), or ms when it has no work count.
    var value: Double { workload.work > 0 ? workload.work / (ms * 1e-3) / 1e9 : ms }
    var referenceValue: Double? {
        guard let reference else { return nil }
        return workload.work > 0 ? workload.work / (reference.ms * 1e-3) / 1e9 : reference.ms
    }
    /// > 1: Retort is faster.
    var ratio: Double? { reference.map { $0.ms / ms } }
}

/// With `peakBandwidth` (GB/s, a GPU's), GB/s rows also show their share of it.
func printTable(_ results: [Result], peakBandwidth: Double? = nil) {
    let nameWidth = max(40, results.map(\.workload.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, n - s.count))
        return right ? fill + s : s + fill
    }
    print(pad("workload", nameWidth) + "  " + pad("Retort", 10, right: true) + "  " + pad("unit", 8) + "  "
          + pad("reference", 10, right: true) + "  " + pad("ratio", 6, right: true) + "  reference measured with")
    for r in results {
        let ref = r.referenceValue.map { format($0, 1) } ?? "—"
        let ratio = r.ratio.map { format($0, 2) + "x" } ?? "—"
        let roofline = peakBandwidth.map { r.workload.unit == "GB/s" ? "  [\(format(100 * r.value / $0, 0))% of peak]" : "" } ?? ""
        print(pad(r.workload.name, nameWidth) + "  " + pad(format(r.value, 1), 10, right: true) + "  " + pad(r.workload.unit, 8)
              + "  " + pad(ref, 10, right: true) + "  " + pad(ratio, 6, right: true) + "  " + (r.reference?.impl ?? "no reference")
              + roofline)
    }
    print("ratio > 1: Retort is faster. Medians; references measured in this run.")
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
    print("wrote \(path)")
}

/// Runs Perf/reference/reference.py once with every spec and collects {name: Reference}.
func runReferences(_ workloads: [Workload], options: Options, device: String, threads: Int?) -> [String: Reference] {
    let sourceTree = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("reference/reference.py").path
    let besideExecutable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("reference.py").path
    let script = options.reference
        ?? [sourceTree, besideExecutable].first { FileManager.default.fileExists(atPath: $0) } ?? sourceTree
    guard FileManager.default.fileExists(atPath: script) else {
        print("references skipped: \(script) not found")
        return [:]
    }
    var input = ""
    for w in workloads {
        guard var spec = w.spec else { continue }
        spec["name"] = w.name
        spec["warmup"] = w.warmup
        spec["reps"] = w.reps
        if w.setup != nil { spec["peak"] = true }   // the reference measures its peak memory too
        if let data = try? JSONSerialization.data(withJSONObject: spec) { input += String(decoding: data, as: UTF8.self) + "\n" }
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [options.python, script, "--device", device] + (threads.map { ["--threads", "\($0)"] } ?? [])
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    do { try process.run() } catch {
        print("references skipped: could not run \(options.python): \(error)")
        return [:]
    }
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try? stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    var references: [String: Reference] = [:]
    var missing: [String] = []
    for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let name = object["name"] as? String else { continue }
        if let ms = object["ms"] as? Double, let impl = object["impl"] as? String {
            references[name] = Reference(ms: ms, impl: impl, peakBytes: (object["peak_bytes"] as? NSNumber)?.intValue)
        } else if let error = object["error"] as? String, !missing.contains(error) {
            missing.append(error)
        }
    }
    if process.terminationStatus != 0 { print("reference script exited with status \(process.terminationStatus)") }
    for reason in missing { print("some references not measured: \(reason)") }
    return references
}
