// Every embedded CUDA kernel compiles with NVRTC for the architectures we support. No GPU is
// needed; `make test` installs the nvidia-cuda-nvrtc wheel into .deps/python for this.
import Backend
import XCTest

final class NVRTCCompileTests: XCTestCase {
    func testEveryKernelCompilesForSm80To90() throws {
        let status = NVRTC.status
        guard status.available else {
            throw XCTSkip("NVRTC compile check skipped: \(status.error)")
        }
        let sources = NVRTC.kernelSources
        XCTAssertGreaterThanOrEqual(sources.count, 2)
        for (name, source) in sources {
            for arch in [80, 86, 89, 90] {
                do {
                    let cubin = try NVRTC.compile(source: source, name: name, arch: arch)
                    XCTAssertGreaterThan(cubin.count, 0, "\(name) sm_\(arch)")
                    // An ELF image: 0x7f 'E' 'L' 'F'.
                    XCTAssertEqual(Array(cubin.prefix(4)), [0x7F, 0x45, 0x4C, 0x46], "\(name) sm_\(arch) is not a cubin")
                } catch {
                    XCTFail("\(error)")
                }
            }
        }
        print("nvrtc \(status.version): compiled \(sources.count) kernels for sm_80/86/89/90")
    }

    func testACompileErrorNamesTheKernelAndLine() throws {
        guard NVRTC.status.available else { throw XCTSkip("NVRTC not available: \(NVRTC.status.error)") }
        let broken = "extern \"C\" __global__ void k(float *x) {\n  x[0] = undefined_name;\n}\n"
        XCTAssertThrowsError(try NVRTC.compile(source: broken, name: "broken.cu", arch: 80)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("broken.cu"), text)
            XCTAssertTrue(text.contains("(2)"), text)   // NVRTC reports file(line)
        }
    }
}
