// backend-check: every Backend op and the model cases on a device, against the CPU backend
// (as ggml's test-backend-ops). `swift test` runs the same cases through XCTest; this
// executable is what scripts/gpu-check runs on a GPU machine, where there is no Swift.
//   backend-check [--backend cuda|cpu] [--precision fp32|tf32|bf16|fp16] [--golden DIR] [--assets DIR] [--minilm full|logits] [--filter TEXT | --case NAME | --list]
// Exit status 0: every check passed (or was skipped, and says so); 1: a check failed; 2: usage.
import Backend
import Conformance
import Foundation

func usage() -> Never {
    print("""
        usage: backend-check [--backend cuda|cpu] [--precision fp32|tf32|bf16|fp16] [--golden DIR] [--assets DIR] [--minilm full|logits] [--filter TEXT | --case NAME | --list]
          --backend    the backend to check against the CPU reference (default cuda)
          --precision  GPU precision (default fp32; tf32: every case, errors up to 4e-3 of an output's scale;
                       bf16/fp16: the 16-bit matmul and tensor-core attention cases)
          --golden     Tests/Golden (tiny BERT/MPNet fixtures; default: beside the executable, then the source tree)
          --assets     folder with all-MiniLM-L6-v2 (default $RETORT_ASSETS or ~/.cache/retort/assets)
          --minilm     full: MiniLM logits, gradients and 5 training steps, SmolLM2 logits and greedy tokens (default);
                       logits: one MiniLM forward pass and no SmolLM2 (a slow candidate)
          --filter     only cases whose name contains TEXT
          --case       only the case named NAME exactly ("models": the model cases)
          --list       print the case names (and "models"), one per line, and exit (after --precision)
        """)
    exit(2)
}

var backendName = "cuda", precision = Precision.fp32, filter: String?, exact: String?, minilm = ModelCases.MiniLMDepth.full
let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
let sourceGolden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Golden").path
var golden = FileManager.default.fileExists(atPath: here + "/Golden") ? here + "/Golden" : sourceGolden
var assets = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
var arguments = Array(CommandLine.arguments.dropFirst())
while !arguments.isEmpty {
    let flag = arguments.removeFirst()
    guard flag != "-h" && flag != "--help" else { usage() }
    if flag == "--list" {   // before any device is touched: gpu-check runs each case in its own process
        for c in Conformance.cases(for: precision) { print(c.name) }
        if precision.halfType == nil { print("models") }
        exit(0)
    }
    guard let value = arguments.first else { usage() }
    arguments.removeFirst()
    switch flag {
    case "--backend": backendName = value
    case "--precision": guard let p = Precision(rawValue: value) else { usage() }; precision = p
    case "--golden": golden = value
    case "--assets": assets = value
    case "--minilm": guard let d = ModelCases.MiniLMDepth(rawValue: value) else { usage() }; minilm = d
    case "--filter": filter = value
    case "--case": exact = value
    default: usage()
    }
}

let reference: Backend
let candidate: Backend
do {   // the registry the CLI uses (a second CPU backend with --backend cpu: checks the harness itself)
    guard let choice = Devices.Choice(rawValue: backendName), choice != .auto else { usage() }
    reference = try Devices.makeBackend(.cpu).backend
    candidate = try Devices.makeBackend(choice, precision: precision).backend
} catch {
    print("backend-check: \(error)")
    exit(1)
}
print("reference: cpu: \(reference.summary)")
print("candidate: \(candidate.kind): \(candidate.summary)")

var results: [CheckResult] = []
let chosen = { [exact, filter] (name: String) -> Bool in exact.map { name == $0 } ?? filter.map { name.contains($0) } ?? true }
for c in Conformance.cases(for: precision) where chosen(c.name) {
    let r = Conformance.run(c, candidate: candidate, reference: reference)
    for x in r where !x.passed { print("FAIL \(x.name): \(x.detail)") }
    print("\(r.allSatisfy(\.passed) ? "ok  " : "FAIL") \(c.name) (\(r.count) outputs)")
    results += r
}
if precision.halfType != nil {
    print("skip model cases: they compare with fp32 tolerances; run them with --precision fp32")
} else if exact.map({ $0 == "models" }) ?? (filter == nil || "model".contains(filter!) || filter!.contains("model")) {
    for r in ModelCases.run(candidate: candidate, reference: reference, golden: golden, assets: assets, minilm: minilm)
        + DecoderCases.run(candidate: candidate, reference: reference, golden: golden, assets: assets, smolLM2: minilm == .full) {
        print("\(r.skipped ? "skip" : r.passed ? "ok  " : "FAIL") \(r.name): \(r.detail)")
        results.append(r)
    }
}
if let exact, results.isEmpty {
    print("backend-check: no case is named \"\(exact)\" at \(precision.rawValue) (--precision \(precision.rawValue) --list names them)")
    exit(2)
}
let failed = results.filter { !$0.passed }.count, skipped = results.filter(\.skipped).count
print("backend-check: \(results.count - failed - skipped) passed, \(failed) failed, \(skipped) skipped")
fflush(nil)   // every stream, before exit's handlers (the emulator prints its counters from one): whole lines, in order
exit(failed == 0 ? 0 : 1)
