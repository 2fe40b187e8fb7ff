// backend-check: every Backend op and the model cases on a device, against the CPU backend
// (as ggml's test-backend-ops). `swift test` runs the same cases through XCTest; the
// backend-check executable and `retort backend-check` (the one binary scripts/gpu-check carries
// to a GPU machine, where there is no Swift) run them here.
//   backend-check [--backend cuda|cpu] [--precision fp32|tf32|bf16|fp16] [--golden DIR] [--assets DIR] [--minilm full|logits] [--filter TEXT | --case NAME | --list]
// Exit status 0: every check passed (or was skipped, and says so), or --help; 1: a check failed; 2: usage.
import Backend
import Foundation

public enum BackendCheck {
    static let usage = """
        usage: backend-check [--backend cuda|cpu] [--precision fp32|tf32|bf16|fp16] [--golden DIR] [--assets DIR] [--minilm full|logits] [--filter TEXT | --case NAME | --list]
          --backend    the backend to check against the CPU reference (default cuda)
          --precision  GPU precision (default fp32; tf32: every case, errors up to 8e-3 of an output's scale;
                       bf16/fp16: the 16-bit matmul and tensor-core attention cases)
          --golden     Tests/Golden (tiny BERT/MPNet/decoder fixtures; default: beside the executable, then the source tree)
          --assets     folder with all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (default $RETORT_ASSETS or ~/.cache/retort/assets)
          --minilm     full: MiniLM logits, gradients and 5 training steps, SmolLM2 logits and greedy tokens (default);
                       logits: one MiniLM forward pass and no SmolLM2 (a slow candidate)
          --filter     only cases whose name contains TEXT
          --case       only the case named NAME exactly ("models": the model cases)
          --list       print the case names (and "models"), one per line, and exit (after --precision)
        """

    /// Runs the checks with `arguments` (the program name left out); returns the exit status.
    public static func main(_ arguments: [String]) -> Int32 {
        var backendName = "cuda", precision = Precision.fp32, filter: String?, exact: String?, minilm = ModelCases.MiniLMDepth.full
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        let sourceGolden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tests/Golden").path
        var golden = FileManager.default.fileExists(atPath: here + "/Golden") ? here + "/Golden" : sourceGolden
        var assets = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
        var arguments = arguments
        while !arguments.isEmpty {
            let flag = arguments.removeFirst()
            guard flag != "-h" && flag != "--help" else { print(usage); return 0 }
            if flag == "--list" {   // before any device is touched: gpu-check runs each case in its own process
                for c in Conformance.cases(for: precision) { print(c.name) }
                if precision.halfType == nil { print("models") }
                return 0
            }
            guard let value = arguments.first else { print(usage); return 2 }
            arguments.removeFirst()
            switch flag {
            case "--backend": backendName = value
            case "--precision": guard let p = Precision(rawValue: value) else { print(usage); return 2 }; precision = p
            case "--golden": golden = value
            case "--assets": assets = value
            case "--minilm": guard let d = ModelCases.MiniLMDepth(rawValue: value) else { print(usage); return 2 }; minilm = d
            case "--filter": filter = value
            case "--case": exact = value
            default: print(usage); return 2
            }
        }

        let reference: Backend
        let candidate: Backend
        do {   // the registry the CLI uses (a second CPU backend with --backend cpu: checks the harness itself)
            guard let choice = Devices.Choice(rawValue: backendName), choice != .auto else { print(usage); return 2 }
            reference = try Devices.makeBackend(.cpu).backend
            candidate = try Devices.makeBackend(choice, precision: precision).backend
        } catch {
            print("backend-check: \(error)")
            return 1
        }
        print("reference: cpu: \(reference.summary)")
        print("candidate: \(candidate.kind): \(candidate.summary)")

        var results: [CheckResult] = []
        let chosen = { [exact, filter] (name: String) -> Bool in exact.map { name == $0 } ?? filter.map { name.contains($0) } ?? true }
        for c in Conformance.cases(for: precision) where chosen(c.name) {
            let r = Conformance.run(c, candidate: candidate, reference: reference)
            for x in r where !x.passed { print("FAIL \(x.name): \(x.detail)") }
            print("\(r.allSatisfy(\.passed) ? "ok  " : "FAIL") \(c.name) (\(r.count) outputs)")
            fflush(nil)   // each case's lines now, also into a file: a run killed later keeps them
            results += r
        }
        if precision.halfType != nil {
            print("skip model cases: they compare with fp32 tolerances; run them with --precision fp32")
        } else if exact.map({ $0 == "models" }) ?? (filter == nil || "model".contains(filter!) || filter!.contains("model")) {
            let groups = [{ ModelCases.run(candidate: candidate, reference: reference, golden: golden, assets: assets, minilm: minilm) },
                          { DecoderCases.run(candidate: candidate, reference: reference, golden: golden, assets: assets, smolLM2: minilm == .full) }]
            for group in groups { for r in group() {   // each group's lines as soon as it is done
                print("\(r.skipped ? "skip" : r.passed ? "ok  " : "FAIL") \(r.name): \(r.detail)")
                fflush(nil)
                results.append(r)
            } }
        }
        if let exact, results.isEmpty {
            print("backend-check: no case is named \"\(exact)\" at \(precision.rawValue) (--precision \(precision.rawValue) --list names them)")
            return 2
        }
        let failed = results.filter { !$0.passed }.count, skipped = results.filter(\.skipped).count
        print("backend-check: \(results.count - failed - skipped) passed, \(failed) failed, \(skipped) skipped")
        return failed == 0 ? 0 : 1
    }
}
