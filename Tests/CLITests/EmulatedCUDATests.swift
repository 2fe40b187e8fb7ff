// The real CUDABackend over the emulated CUDA device (Tests/CUDAEmulation, built as
// libRetortEmulatedCUDA.so): libcuda.so.1, libnvrtc and libcublasLt in a folder on
// LD_LIBRARY_PATH, which CBackend's loader already searches. backend-check runs every op case at
// fp32, tf32, bf16 and fp16 and the model cases against the CPU; a short SST-2 fine-tuning and a
// short TinyBERT distillation on the emulated device follow the CPU run's losses.
// What this proves and what only a real GPU can: docs/BACKEND.md, "The emulated CUDA device".
import Foundation
import XCTest

/// A folder beside the build's executables (so nothing is left in /tmp) where the emulator
/// stands in for the NVIDIA libraries (and NCCL, over the process's MPI job: data-parallel
/// tests); made once, reused by later runs.
private let emulatorFolder: Result<URL, Error> = Result {
    let executable = try builtExecutable()
    let library = executable.deletingLastPathComponent().appendingPathComponent("libRetortEmulatedCUDA.so")
    guard FileManager.default.fileExists(atPath: library.path) else {
        throw XCTSkip("libRetortEmulatedCUDA.so was not built beside \(executable.path)")
    }
    let folder = executable.deletingLastPathComponent().appendingPathComponent("emulated-cuda")
    try FileManager.default.createDirectory(at: folder.appendingPathComponent("cache"), withIntermediateDirectories: true)
    for name in ["libcuda.so.1", "libnvrtc.so.13", "libcublasLt.so.13", "libnccl.so.2"] {
        let link = folder.appendingPathComponent(name)
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: link.path)) == library.path { continue }
        try? FileManager.default.removeItem(at: link)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: library)
    }
    return folder
}

/// The environment that makes `--device cuda` the emulated device (counters printed at exit).
func emulatedCUDA() throws -> [String: String] {
    let folder = try emulatorFolder.get()
    // Only the emulator: no folder the loader searches before LD_LIBRARY_PATH, no Python
    // environment with NVIDIA wheels.
    return ["LD_LIBRARY_PATH": folder.path, "RETORT_KERNEL_CACHE": folder.appendingPathComponent("cache").path,
            "RETORT_EMULATED_COUNTERS": "1", "PYTHONPATH": "", "RETORT_CUDA_PATH": "", "CUDA_HOME": "", "CUDA_PATH": "",
            "VIRTUAL_ENV": "", "CONDA_PREFIX": ""]
}

/// The emulator's counters as printed at exit: launches, matmuls, copies to the device, to the
/// host, on the device, memsets, synchronizations, allocations, cuBLASLt refusals.
func emulatedCounters(_ output: String) throws -> [Int] {
    let line = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("emulated CUDA counters: ") }, output)
    return line.split(separator: " ").compactMap { Int($0) }
}

final class EmulatedCUDATests: XCTestCase {
    func emulated() throws -> [String: String] { try emulatedCUDA() }

    func asset(_ name: String) throws -> String {
        let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
        let folder = root + "/" + name
        guard FileManager.default.fileExists(atPath: folder) else { throw XCTSkip("\(name) not found in \(root): run scripts/fetch-assets") }
        return folder
    }

    func backendCheck(_ arguments: [String]) throws -> (Int32, String) {
        try RetortProcess(["--backend", "cuda"] + arguments, environment: try emulated(), executable: "backend-check").finish()
    }

    func testEveryCaseAtFP32IncludingTheModels() throws {
        let (status, output) = try backendCheck(["--minilm", "logits"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("candidate: cuda: Retort emulated CUDA device (sm_80)"), output)
        XCTAssertTrue(output.contains("tiny-bert: every parameter gradient") && output.contains("tiny-mpnet: every parameter gradient"), output)
        XCTAssertTrue(output.contains(", 0 failed, "), output)
        // cuBLASLt took every matmul as planned (a bias epilogue chosen for the wrong alignment is
        // refused, and the fallback would hide it in the results).
        XCTAssertEqual(try emulatedCounters(output)[8], 0, "cuBLASLt refusals: \(output)")
        let (unknown, message) = try backendCheck(["--case", "no such case"])
        XCTAssertEqual(unknown, 2, message)
    }

    func testEveryCaseAtTF32AndThe16BitCases() throws {
        for precision in ["tf32", "bf16", "fp16"] {
            let (status, output) = try backendCheck(["--precision", precision, "--minilm", "logits"])
            XCTAssertEqual(status, 0, "\(precision): \(output)")
            XCTAssertTrue(output.contains(", 0 failed, "), "\(precision): \(output)")
            XCTAssertEqual(try emulatedCounters(output)[8], 0, "\(precision): cuBLASLt refusals: \(output)")
        }
    }

    /// From T=128 the fp32 attention is composed of cuBLASLt matmuls (CUDABackend.composesAttention,
    /// grouped heads excepted); RETORT_CUDA_ATTENTION=fused keeps attention.cu. Both agree with the CPU.
    func testLongAttentionIsComposedUnlessTheKernelIsAskedFor() throws {
        var matmuls: [String: Int] = [:]
        for path in ["auto", "fused"] {
            var environment = try emulated()
            environment["RETORT_CUDA_ATTENTION"] = path
            let (status, output) = try RetortProcess(["--backend", "cuda", "--case", "attention B=4 T=130 NH=2 HS=16 (mask, bias, scores, dScores, dropout)"],
                                                     environment: environment, executable: "backend-check").finish()
            XCTAssertEqual(status, 0, "\(path): \(output)")
            XCTAssertTrue(output.contains("ok   attention B=4 T=130"), "\(path): \(output)")
            matmuls[path] = try emulatedCounters(output)[1]
        }
        // The case's own matmuls are none; the composed path adds the score and value products.
        XCTAssertGreaterThan(matmuls["auto"]!, matmuls["fused"]!, "\(matmuls)")
    }

    /// A cuBLASLt that has no BIAS-epilogue algorithm for a 16-byte-aligned bias: the matmul runs
    /// without the epilogue and a kernel adds the bias, instead of the program stopping.
    func testARefusedBiasEpilogueFallsBackToTheBiasKernel() throws {
        var environment = try emulated()
        environment["RETORT_EMULATED_BIAS_ALIGN"] = "32"
        let (status, output) = try RetortProcess(["--backend", "cuda", "--filter", "matmul with bias"], environment: environment,
                                                 executable: "backend-check").finish()
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("ok   matmul with bias, misaligned views, batched bias (4 outputs)"), output)
        XCTAssertGreaterThan(try emulatedCounters(output)[8], 0, "the heuristic refused the 16-byte-aligned bias: \(output)")
    }

    /// The first-run safeguards: a GPU newer than NVRTC knows runs PTX for the newest
    /// architecture NVRTC has; a damaged cached kernel is compiled again; RETORT_CUDA_SYNC=1 waits
    /// after every kernel and matmul; an NVRTC or cuBLASLt newer than the driver is refused with
    /// the reason and what to install.
    func testFirstRunSafeguards() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("retort-kernel-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        var environment = try emulated()
        environment["RETORT_KERNEL_CACHE"] = cache.path
        func check(_ extra: [String: String]) throws -> String {
            let (status, output) = try RetortProcess(["--backend", "cuda", "--filter", "gelu"], environment: environment.merging(extra) { $1 },
                                                     executable: "backend-check").finish()
            XCTAssertEqual(status, 0, output)
            XCTAssertTrue(output.contains("ok   gelu (erf and tanh forms), tanh forward/backward"), output)
            return output
        }
        let future = try check(["RETORT_EMULATED_ARCH": "130"])
        XCTAssertTrue(future.contains("sm_130") && future.contains("NVRTC 13.0 (PTX for compute_121, compiled by the driver)"), future)

        _ = try check([:])
        let cubins = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasSuffix("-sm80-nvrtc13.0.cubin") }
        let kernelFiles = try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources/Kernels/cuda").path).filter { $0.hasSuffix(".cu") }
        XCTAssertEqual(cubins.count, kernelFiles.count, "one per kernel file (\(kernelFiles.sorted())): \(cubins)")
        for name in cubins { try Data("damaged".utf8).write(to: cache.appendingPathComponent(name)) }
        _ = try check([:])
        for name in cubins {
            XCTAssertTrue(try String(contentsOf: cache.appendingPathComponent(name), encoding: .utf8).hasPrefix("RETORT-EMULATED-CUBIN"), name)
        }

        let counted = try check(["RETORT_CUDA_SYNC": "1"])
        let numbers = try emulatedCounters(counted)
        let (launches, matmuls, synchronizations) = (numbers[0], numbers[1], numbers[6])
        XCTAssertGreaterThanOrEqual(synchronizations, launches + matmuls, String(counted))

        let home = FileManager.default.temporaryDirectory.path   // no ~/.local NVIDIA wheels either
        let (status, devices) = try retort(["devices"], environment: environment.merging(["RETORT_EMULATED_DRIVER": "12040",
                                                                                           "HOME": home]) { $1 })
        XCTAssertEqual(status, 0, devices)
        XCTAssertTrue(devices.contains("libnvrtc.so.13 (CUDA 13) was found but the driver supports CUDA 12.4 at most: install the "
                                       + "CUDA 12 NVRTC (pip install nvidia-cuda-nvrtc-cu12) or update the driver"), devices)
    }

    /// A GPU stack that computes wrong matmuls or fails launches is caught by the backend's
    /// start-up check: `--device auto` falls back to the CPU saying why, `--device cuda` stops in
    /// one line — before any work.
    func testABrokenGPUStackIsRefusedAtStartUp() throws {
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Golden/tiny-bert").path
        let reasons = ["matmul": "a test matmul and kernel computed [5.0, -2.0, 6.0, -3.0, -2.0, 14.0], expected "
                                 + "[3.0, -4.0, 4.0, -5.0, -4.0, 12.0]: this GPU, driver or library does not compute what Retort needs",
                       "launch": "launching scale_f32 (memory.cu) (grid 1, block 256) failed: unspecified launch failure (CUDA error 719)"]
        for (broken, reason) in reasons {
            let environment = try emulated().merging(["RETORT_EMULATED_BROKEN": broken]) { $1 }
            let (status, output) = try retort(["predict", "--model", model, "--device", "auto", "a fine film"], environment: environment)
            XCTAssertEqual(status, 0, output)
            XCTAssertTrue(output.contains("retort: cuda not usable (\(reason)); using cpu"), output)
            XCTAssertTrue(output.contains("a fine film"), output)
            let (refused, message) = try retort(["predict", "--model", model, "--device", "cuda", "a fine film"], environment: environment)
            XCTAssertNotEqual(refused, 0, message)
            let lines = message.split(separator: "\n").filter { !$0.hasPrefix("emulated CUDA counters") }
            XCTAssertEqual(lines, ["Error: --device cuda: \(reason)"[...]], message)
        }
    }

    /// The 16-bit kernels need sm_80; a Turing-class device (sm_75) runs fp32 and refuses bf16 in one line.
    func testAnOlderDeviceRunsFP32AndRefusesBF16() throws {
        var environment = try emulated()
        environment["RETORT_EMULATED_ARCH"] = "75"
        let (status, output) = try RetortProcess(["--backend", "cuda", "--filter", "LoRA"], environment: environment,
                                                 executable: "backend-check").finish()
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("(sm_75)") && output.contains(", 0 failed, "), output)
        let (status16, output16) = try RetortProcess(["--backend", "cuda", "--precision", "bf16"], environment: environment,
                                                     executable: "backend-check").finish()
        XCTAssertEqual(status16, 1, output16)
        XCTAssertEqual(output16.split(separator: "\n").filter { !$0.hasPrefix("emulated CUDA counters") }.count, 1, output16)
    }

    /// The step losses of a run on the emulated device against the same run on the CPU.
    func losses(_ log: String) throws -> [Double] {
        try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return object?["step"] != nil ? object?["loss"] as? Double : nil
        }
    }

    /// Dropout masks come from the same counter-based generator on both backends, so the runs
    /// differ only by summation order (the emulated cuBLASLt and the CUDA kernels against OpenBLAS
    /// and the CPU kernels): ~1e-7 relative per op. AdamW divides by √v, which can amplify that
    /// for gradient elements at rounding-noise level, but over 20 steps at 5e-5 the losses agreed
    /// to 9e-8 relative when this was written; the tolerance is 1e-5 relative. A wrong kernel
    /// moves a loss by more than 1e-3 within a step or two.
    func assertSameLosses(_ got: [Double], _ expected: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, expected.count, "\(what): \(got) vs \(expected)", file: file, line: line)
        for (g, e) in zip(got, expected) {
            XCTAssertLessThanOrEqual(abs(g - e), 1e-5 * abs(e), "\(what): \(got) vs \(expected)", file: file, line: line)
        }
    }

    func testSST2FineTuningAndTinyBERTDistillationFollowTheCPU() throws {
        let minilm = try asset("all-MiniLM-L6-v2")
        let sst2 = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/data/sst2")
        guard FileManager.default.fileExists(atPath: sst2.path + "/train.tsv") else { throw XCTSkip("\(sst2.path) not found") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("retort-emulated-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        // A dev set of 16 sentences keeps the evaluation short.
        let test = try String(contentsOfFile: sst2.path + "/test.tsv", encoding: .utf8).split(separator: "\n").prefix(16)
        try (test.joined(separator: "\n") + "\n").write(to: work.appendingPathComponent("dev.tsv"), atomically: true, encoding: .utf8)
        let data = ["--train", sst2.path + "/train.tsv", "--dev", work.path + "/dev.tsv", "--text-column", "1", "--label-column", "0",
                    "--batch-size", "4", "--max-length", "24"]
        var logs: [String: [Double]] = [:]
        for device in ["cpu", "cuda"] {
            let out = work.path + "/finetune-" + device
            let (status, output) = try retort(["finetune", "--model", minilm, "--device", device, "--epochs", "1", "--max-steps", "20",
                                               "--out", out] + data, environment: device == "cuda" ? try emulated() : [:])
            XCTAssertEqual(status, 0, output)
            if device == "cuda" { XCTAssertTrue(output.contains("Retort emulated CUDA device"), output) }
            logs[device] = try losses(out + "/log.jsonl")
        }
        XCTAssertEqual(logs["cpu"]?.count, 20)
        assertSameLosses(logs["cuda"] ?? [], logs["cpu"] ?? [], "20-step SST-2 fine-tuning, emulated CUDA vs CPU")

        // TinyBERT from the CPU-trained teacher: a 1-layer student, both stages, a few steps each.
        for device in ["cpu", "cuda"] {
            let out = work.path + "/distill-" + device
            let (status, output) = try retort(["distill", "--teacher", work.path + "/finetune-cpu", "--device", device,
                                               "--student-init", "odd", "--student-layers", "1", "--epochs", "1,1", "--max-steps", "4",
                                               "--no-report", "--out", out] + data, environment: device == "cuda" ? try emulated() : [:])
            XCTAssertEqual(status, 0, output)
            logs["distill-" + device] = try losses(out + "/log.jsonl")
        }
        XCTAssertEqual(logs["distill-cpu"]?.count, 8, "4 intermediate and 4 prediction steps")
        assertSameLosses(logs["distill-cuda"] ?? [], logs["distill-cpu"] ?? [], "TinyBERT distillation, emulated CUDA vs CPU")
    }
}

/// A training step reads the device once: the loss terms and the gradient norms in one download
/// (counted on the emulated device as the difference between a 6-step and a 2-step run, so
/// loading, evaluation and saving cancel out). At bf16 the weights are cast to 16 bits once per
/// step, not per matmul: a step launches fewer casts than two per matmul.
final class EmulatedCUDAStepTests: TinyRunTestCase {
    /// Launches, matmuls, …, host synchronizations per optimizer step (the emulator's counters).
    func perStep(_ name: String, _ command: [String], stages: Int) throws -> [Double] {
        var counts: [[Int]] = []
        for steps in [2, 6] {
            let out = work.appendingPathComponent("\(name)-\(steps)").path
            let (status, output) = try retort(command + ["--max-steps", "\(steps)", "--out", out], environment: try emulatedCUDA())
            XCTAssertEqual(status, 0, "\(name): \(output)")
            counts.append(try emulatedCounters(output))
        }
        let perStep = zip(counts[1], counts[0]).map { Double($0 - $1) / Double(4 * stages) }
        print("\(name): per training step on the emulated device: \(perStep[0]) launches, \(perStep[1]) matmuls, "
              + "\(perStep[6]) host synchronizations, \(perStep[3]) downloads")
        return perStep
    }

    func testOneHostSynchronizationPerTrainingStep() throws {
        let common = ["--train", data, "--device", "cuda", "--batch-size", "8", "--max-length", "12", "--save-minutes", "0"]
        let distill = ["distill", "--teacher", teacher, "--student-init", "odd", "--student-layers", "1", "--no-report"]
        let runs: [(String, [String], Int)] = [   // name, command, optimizer steps per --max-steps
            ("fine-tuning", ["finetune", "--model", teacher], 1),
            ("LoRA fine-tuning", ["finetune", "--model", teacher, "--lora-rank", "4"], 1),
            ("TinyBERT, both stages", distill + ["--epochs", "1,1"], 2),
            ("DistilBERT", distill + ["--method", "distilbert", "--epochs", "1"], 1),
        ]
        var fp32: [String: [Double]] = [:]
        for (name, command, stages) in runs {
            fp32[name] = try perStep(name, command + common, stages: stages)
            XCTAssertLessThanOrEqual(fp32[name]![6], 1, "\(name): host synchronizations per step")
        }
        // bf16: the same step plus the casts. Casting both operands of every matmul would add two
        // launches per matmul; with the weights' kept 16-bit copy only the activations are cast
        // (the forward's and dX's weight operands come from the copy, remade once per step).
        for name in ["fine-tuning", "LoRA fine-tuning"] {
            let (_, command, stages) = runs.first { $0.0 == name }!
            let bf16 = try perStep(name + " at bf16", command + common + ["--precision", "bf16"], stages: stages)
            let casts = bf16[0] - fp32[name]![0], matmuls = bf16[1]
            print("\(name) at bf16: \(casts) casts per step for \(matmuls) matmuls")
            XCTAssertLessThanOrEqual(bf16[6], 1, "\(name) at bf16: host synchronizations per step")
            XCTAssertLessThan(casts, 1.5 * matmuls, "\(name) at bf16: the weight operands are cast per matmul")
        }
    }
}
