// The retort command line. Thin: parse, call the library, print.
import ArgumentParser
import Backend

@main
struct Retort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retort",
        abstract: "Fine-tune and distil transformer text classifiers on Retort's own CPU/CUDA backend.",
        version: "0.1.0",
        subcommands: [DevicesCommand.self])
}

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the compute devices and libraries Retort found (exits 0 either way).",
        discussion: """
            cpu: the OpenBLAS library loaded, the kernels it runs (chosen by Retort from CPUID unless \
            OPENBLAS_CORETYPE is set) and the thread count. cuda: each GPU, or why none can be used. \
            nvrtc/cublasLt: the CUDA libraries found at run time (CUDA_HOME, LD_LIBRARY_PATH, pip's \
            nvidia/*/lib folders, /usr/local/cuda).
            """)

    @Flag(name: .long, help: "Also compile every embedded CUDA kernel with NVRTC for the given architecture.")
    var compileKernels = false

    @Option(name: .long, help: "Architecture for --compile-kernels, e.g. 80, 86, 89, 90.")
    var arch: Int = 80

    func run() throws {
        let lines = [Devices.cpuLine] + Devices.cudaLines
        let width = lines.map(\.name.count).max() ?? 4
        for line in lines {
            print(line.name + String(repeating: " ", count: width + 2 - line.name.count) + line.text)
        }
        guard compileKernels else { return }
        guard NVRTC.status.available else {
            print("kernels  skipped: NVRTC not available")
            return
        }
        for (name, source) in NVRTC.kernelSources {
            do {
                let cubin = try NVRTC.compile(source: source, name: name, arch: arch)
                print("kernels  \(name) sm_\(arch): \(cubin.count) bytes")
            } catch {
                print("kernels  \(error)")
                throw ExitCode(1)
            }
        }
    }
}
