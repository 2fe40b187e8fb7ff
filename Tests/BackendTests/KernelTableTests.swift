// The typed kernel table CUDABackend launches through (Sources/Backend/CUDAKernelTable.swift)
// against the `__global__` signatures in the embedded .cu sources: every kernel of the sources is
// in the table and every entry is a kernel of its file, with the same parameters in the same
// order. With that, CUDABackend.launch's check of each call against the table is a check against
// the kernel itself. No GPU or NVRTC is needed: the sources are embedded in the binary.
@testable import Backend
import Foundation
import XCTest

/// `extern "C" __global__` signatures of a CUDA C source, with macros that define kernels
/// (attention_tc.cu's TC_KERNELS) expanded at their invocations.
enum KernelSignatures {
    static func parse(_ source: String) -> [(name: String, parameters: [String])] {
        let text = expandKernelMacros(stripComments(source))
        let pattern = try! NSRegularExpression(
            pattern: #"extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?(\w+(?:##\w+)?)\s*\(([^)]*)\)"#)
        return pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { match in
            let name = String(text[Range(match.range(at: 1), in: text)!])
            guard !name.contains("##") else { return nil }
            let list = String(text[Range(match.range(at: 2), in: text)!])
            return (name, list.split(separator: ",").map { typeOf(String($0)) })
        }
    }

    /// "const float *__restrict__ q" → "float *"; "unsigned long long seed" → "unsigned long long".
    static func typeOf(_ declaration: String) -> String {
        var d = declaration.replacingOccurrences(of: "\\", with: " ").replacingOccurrences(of: "__restrict__", with: " ")
            .replacingOccurrences(of: "*", with: " * ")
        d = d.split(whereSeparator: \.isWhitespace).filter { $0 != "const" }.joined(separator: " ")
        guard let last = d.split(separator: " ").last else { return d }
        return String(d.dropLast(last.count)).trimmingCharacters(in: .whitespaces)   // drop the parameter's name
    }

    static func stripComments(_ s: String) -> String {
        let block = try! NSRegularExpression(pattern: #"/\*.*?\*/"#, options: [.dotMatchesLineSeparators])
        let line = try! NSRegularExpression(pattern: #"//[^\n]*"#)
        var t = block.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: " ")
        t = line.stringByReplacingMatches(in: t, range: NSRange(t.startIndex..., in: t), withTemplate: "")
        return t
    }

    /// `#define NAME(A, B) … f_##A(…) …` containing kernels, expanded at each `NAME(x, y)` line.
    static func expandKernelMacros(_ s: String) -> String {
        let joined = s.replacingOccurrences(of: "\\\n", with: " ")
        let define = try! NSRegularExpression(pattern: #"#define\s+(\w+)\(([^)]*)\)([^\n]*)"#)
        var expansions = ""
        for m in define.matches(in: joined, range: NSRange(joined.startIndex..., in: joined)) {
            let name = String(joined[Range(m.range(at: 1), in: joined)!]), body = String(joined[Range(m.range(at: 3), in: joined)!])
            guard body.contains("__global__") else { continue }
            let arguments = joined[Range(m.range(at: 2), in: joined)!].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let call = try! NSRegularExpression(pattern: #"(?m)^\s*"# + name + #"\(([^)]*)\)"#)
            for c in call.matches(in: joined, range: NSRange(joined.startIndex..., in: joined)) {
                let values = joined[Range(c.range(at: 1), in: joined)!].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                var expanded = body
                for (argument, value) in zip(arguments, values) { expanded = expanded.replacingOccurrences(of: "##" + argument, with: value) }
                expansions += "\n" + expanded
            }
        }
        return joined + expansions
    }
}

final class KernelTableTests: XCTestCase {
    func testTheTableMatchesEveryGlobalSignatureBothWays() throws {
        var fromSources: [String: [String]] = [:]
        for (file, source) in NVRTC.kernelSources {
            for kernel in KernelSignatures.parse(source) { fromSources["\(file):\(kernel.name)"] = kernel.parameters }
        }
        XCTAssertGreaterThan(fromSources.count, 40, "the parser found too few kernels: \(fromSources.keys.sorted())")
        let table = Dictionary(uniqueKeysWithValues: CUDAKernelTable.all.map { ("\($0.file):\($0.name)", $0.parameters.map(\.rawValue)) })
        XCTAssertEqual(table.count, CUDAKernelTable.all.count, "an entry is in the table twice")
        XCTAssertEqual(Set(table.keys).subtracting(fromSources.keys).sorted(), [], "table entries with no such kernel in their file")
        XCTAssertEqual(Set(fromSources.keys).subtracting(table.keys).sorted(), [], "kernels missing from the table")
        for (key, parameters) in table.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(parameters, fromSources[key] ?? parameters, "\(key): the table's parameters differ from the __global__ signature")
        }
    }

    func testTheParserSeesParametersTheirOrderAndMacroKernels() {
        let source = """
            // extern "C" __global__ void commented_out(float *x) {}
            extern "C" __global__ void k(float *__restrict__ out, const int *mask, long long n, float p,
                                         unsigned long long seed, const unsigned short *h) {}
            #define MAKE(SUFFIX, HS) \\
                extern "C" __global__ void __launch_bounds__(128) made_##SUFFIX(double *partial, int T) { body<HS>(); }
            MAKE(a32, 32)
            MAKE(b64, 64)
            """
        let parsed = KernelSignatures.parse(source)
        XCTAssertEqual(parsed.map(\.name), ["k", "made_a32", "made_b64"])
        XCTAssertEqual(parsed.first?.parameters, ["float *", "int *", "long long", "float", "unsigned long long", "unsigned short *"])
        XCTAssertEqual(parsed.last?.parameters, ["double *", "int"])
        // Every parsed type is one the table can express.
        for kernel in parsed { for p in kernel.parameters { XCTAssertNotNil(CUDAKernel.Parameter(rawValue: p), p) } }
    }

    func testALaunchArgumentIsCheckedAgainstItsParameter() {
        typealias Arg = CUDABackend.KernelArg
        let floats = Tensor(DeviceBuffer(address: 64, count: 4, dtype: .f32) { _ in })
        let ints = Tensor(DeviceBuffer(address: 64, count: 4, dtype: .i32) { _ in })
        XCTAssertTrue(Arg.tensor(floats).fits(.floats))
        XCTAssertFalse(Arg.tensor(ints).fits(.floats), "an int32 tensor passed for float *")
        XCTAssertTrue(Arg.tensor(nil).fits(.ints), "a missing optional pointer")
        XCTAssertFalse(Arg.int32(3).fits(.int64), "an int passed for long long")
        XCTAssertFalse(Arg.float(1).fits(.floats), "a scalar passed for a pointer")
        XCTAssertFalse(Arg.tensor(floats).fits(.int32), "a pointer passed for an int")
    }
}
