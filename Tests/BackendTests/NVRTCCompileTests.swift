// Every embedded CUDA kernel compiles with NVRTC for the architectures we support. No GPU is
// needed; `make test` installs the nvidia-cuda-nvrtc wheel into .deps/python for this.
@testable import Backend
import Foundation
import XCTest

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
        if Array(haystack[i..<(i + needle.count)]) == needle { return true }
    }
    return false
}

final class NVRTCCompileTests: XCTestCase {
    func testEveryKernelCompilesForSm75To90() throws {
        let status = NVRTC.status
        guard status.available else {
            throw XCTSkip("NVRTC compile check skipped: \(status.error)")
        }
        let sources = NVRTC.kernelSources
        let launched = CUDAKernelTable.all   // checked against the sources' signatures by KernelTableTests
        XCTAssertEqual(Set(sources.map(\.name)), Set(launched.map(\.file)), "every kernel file is embedded and used")
        for (name, source) in sources {
            for arch in [75, 80, 86, 89, 90] {
                do {
                    let cubin = try NVRTC.compile(source: source, name: name, target: NVRTC.Target(arch: arch))
                    XCTAssertGreaterThan(cubin.count, 0, "\(name) sm_\(arch)")
                    // An ELF image: 0x7f 'E' 'L' 'F'.
                    XCTAssertEqual(Array(cubin.prefix(4)), [0x7F, 0x45, 0x4C, 0x46], "\(name) sm_\(arch) is not a cubin")
                    // Every function the CUDA backend launches from this file is in the image under its C name.
                    // (The tensor-core kernels need sm_80: below it their file compiles to nothing.)
                    for function in launched where function.file == name {
                        let present = contains(cubin, Array(function.name.utf8))
                        if name == "attention_tc.cu" && arch < 80 {
                            XCTAssertFalse(present, "\(name) sm_\(arch) should have no tensor-core kernel")
                        } else {
                            XCTAssertTrue(present, "\(name) sm_\(arch) has no kernel \(function.name)")
                        }
                    }
                } catch {
                    XCTFail("\(error)")
                }
            }
        }
        print("nvrtc \(status.version): compiled \(sources.count) kernel files (\(launched.count) kernels) for sm_75/80/86/89/90")
    }

    /// A GPU newer than NVRTC knows gets PTX for the newest architecture NVRTC has (the driver
    /// compiles it for the GPU); one older than it knows is refused with the reason.
    func testAnArchitectureNVRTCDoesNotKnowGetsPTXForTheNewestItKnows() throws {
        guard NVRTC.status.available else { throw XCTSkip("NVRTC not available: \(NVRTC.status.error)") }
        let known = NVRTC.supportedArchitectures
        XCTAssertTrue(known.contains(80) && known.contains(90), "\(known)")
        XCTAssertEqual(try NVRTC.target(for: 90).get(), NVRTC.Target(arch: 90))
        let future = try NVRTC.target(for: 990).get()
        XCTAssertEqual(future, NVRTC.Target(arch: known.max()!, ptx: true))
        let (name, source) = NVRTC.kernelSources.first { $0.name == "gelu.cu" }!
        let ptx = String(decoding: try NVRTC.compile(source: source, name: name, target: future).prefix { $0 != 0 }, as: UTF8.self)
        XCTAssertTrue(ptx.contains(".target sm_\(future.arch)") && ptx.contains(".entry gelu_forward"), String(ptx.prefix(400)))
        guard case .failure(let error) = NVRTC.target(for: 30) else { return XCTFail("sm_30 is older than any NVRTC 12+ knows") }
        XCTAssertTrue(error.description.contains("not this GPU's sm_30"), error.description)
    }

    func testACompileErrorNamesTheKernelAndLine() throws {
        guard NVRTC.status.available else { throw XCTSkip("NVRTC not available: \(NVRTC.status.error)") }
        let broken = "extern \"C\" __global__ void k(float *x) {\n  x[0] = undefined_name;\n}\n"
        XCTAssertThrowsError(try NVRTC.compile(source: broken, name: "broken.cu", target: NVRTC.Target(arch: 80))) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("broken.cu"), text)
            XCTAssertTrue(text.contains("(2)"), text)   // NVRTC reports file(line)
        }
    }
}
