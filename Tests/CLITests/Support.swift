// Shared by the CLI tests: running the built `retort` (in a separate process, as a user does:
// OpenBLAS and the CUDA libraries are loaded once per process), and a work folder with labelled
// text in the tiny golden models' vocabulary.
import Foundation
import XCTest

/// An executable of the package (retort, backend-check, Perf) built beside the tests.
func builtExecutable(_ name: String = "retort") throws -> URL {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    // On Linux the test bundle is a directory inside the build folder; the executables sit beside it.
    let candidates = [directory.appendingPathComponent(name), directory.deletingLastPathComponent().appendingPathComponent(name)]
    guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw XCTSkip("the \(name) executable was not built next to the tests (\(directory.path))")
    }
    return binary
}

/// A started `retort` process whose output (stdout + stderr) is collected in a file.
struct RetortProcess {
    let process: Process
    let output: URL

    /// `standardInput`: what the process reads on its standard input (a file), when given.
    /// `addressSpaceLimit`: bytes of address space the process may use (`ulimit -v`, through sh), when given.
    init(_ arguments: [String], environment: [String: String] = [:], executable: String = "retort", standardInput: String? = nil,
         directory: String? = nil, addressSpaceLimit: Int? = nil) throws {
        process = Process()
        let binary = try builtExecutable(executable)
        if let addressSpaceLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -v \(addressSpaceLimit / 1024) && exec \"$0\" \"$@\"", binary.path] + arguments
        } else {
            process.executableURL = binary
            process.arguments = arguments
        }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        output = FileManager.default.temporaryDirectory.appendingPathComponent("retort-output-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        if let standardInput {
            let file = output.appendingPathExtension("in")
            try standardInput.write(to: file, atomically: true, encoding: .utf8)
            process.standardInput = try FileHandle(forReadingFrom: file)
            defer { try? FileManager.default.removeItem(at: file) }
            try process.run()
            return
        }
        try process.run()
    }

    /// Waits for the end; (exit status, or 128 + signal; everything it printed).
    func finish() -> (Int32, String) {
        process.waitUntilExit()
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: output)
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, text)
    }
}

/// Runs the built `retort` with extra environment; returns (exit status, stdout + stderr).
func retort(_ arguments: [String], environment: [String: String] = [:], standardInput: String? = nil) throws -> (Int32, String) {
    try RetortProcess(arguments, environment: environment, standardInput: standardInput).finish()
}

/// A work folder with data.csv: 96 labelled texts (LABEL_0…2) in the tiny golden vocabulary
/// (letters and w0…w88), and the golden models.
class TinyRunTestCase: XCTestCase {
    let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")
    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("retort-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        var rows = ["text,label"]
        let words = (0..<89).map { "w\($0)" } + (97...122).map { String(UnicodeScalar($0)!) }
        var state: UInt64 = 3
        for i in 0..<96 {
            let n = 3 + i % 5
            let text = (0..<n).map { _ -> String in state = state &* 6364136223846793005 &+ 1442695040888963407; return words[Int(state >> 33) % words.count] }
            rows.append(text.joined(separator: " ") + ",LABEL_\(i % 3)")
        }
        try rows.joined(separator: "\n").write(to: work.appendingPathComponent("data.csv"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    /// The tiny golden classifier (2 layers, hidden 64, labels LABEL_0…2): a model and a teacher.
    var teacher: String { golden.appendingPathComponent("tiny-bert").path }
    var data: String { work.appendingPathComponent("data.csv").path }
}

/// The real SmolLM2-135M-Instruct GGUF (scripts/fetch-assets smollm2), or a skip without it.
func smolLM2() throws -> String {
    let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
    let path = root + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) not found: run scripts/fetch-assets smollm2") }
    return path
}
