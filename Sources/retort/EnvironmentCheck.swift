// The RETORT_* variables that take a number or a switch, checked before anything runs: the
// kernels and the trainer read them with atoi/Int(…) and would ignore `RETORT_NUM_THREADS=two`
// or `RETORT_CPU_LEVEL=avx2` without a word.
import Foundation

enum EnvironmentCheck {
    /// Each variable, what it accepts, and the words of the error.
    static let rules: [(name: String, accepts: @Sendable (String) -> Bool, expected: String)] = [
        ("RETORT_NUM_THREADS", { Int($0).map { (1...256).contains($0) } ?? false }, "a whole number of threads from 1 to 256"),
        ("RETORT_CPU_LEVEL", { ["1", "3", "4"].contains($0) }, "4 (AVX-512), 3 (AVX2+FMA) or 1 (baseline)"),
        ("RETORT_CUDA_ATTENTION", { ["fused", "composed"].contains($0) }, "fused (attention.cu at every length) or composed (the default)"),
        ("RETORT_CUDA_SYNC", { ["0", "1"].contains($0) }, "1 (wait for the GPU after every op) or 0"),
        ("RETORT_NCCL", { ["0", "1"].contains($0) }, "0 (sum through host memory) or 1 (NCCL even with more ranks than GPUs)"),
        ("RETORT_COLLECTIVE_TIMEOUT", { Double($0).map { $0.isFinite && $0 > 0 } ?? false }, "a positive number of seconds"),
        ("RETORT_WEIGHT_CHECK_EVERY", { Int($0).map { $0 > 0 } ?? false }, "a positive whole number of steps"),
    ]

    /// The first variable set to a value it does not accept, as a one-line message; nil when all
    /// are unset, empty or well formed.
    static func problem(in environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        for rule in rules {
            guard let value = environment[rule.name], !value.isEmpty, !rule.accepts(value) else { continue }
            return "\(rule.name)=\(value) is not \(rule.expected); set it to one, or unset it for the default"
        }
        return nil
    }
}
