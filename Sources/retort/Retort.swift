// The retort command line. Thin: parse, call the library, print.
import ArgumentParser
import Backend
import Conformance
import Foundation
import Models
import PerfSuite
import Train

/// `retort backend-check …` and `retort perf …` are the backend-check and Perf executables
/// (their own flags, not ArgumentParser's): the one static binary scripts/gpu-check carries.
@main
enum Entry {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let problem = EnvironmentCheck.problem() {
            FileHandle.standardError.write(Data("Error: \(problem)\n".utf8))
            exit(ExitCode.validationFailure.rawValue)
        }
        switch arguments.first {
        case "backend-check":
            let status = BackendCheck.main(Array(arguments.dropFirst()))
            fflush(nil)
            exit(status)
        case "perf": PerfCommand.main(Array(arguments.dropFirst()))
        default: Arguments.run(arguments)
        }
    }
}

struct Retort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retort",
        abstract: "Fine-tune and distil transformer text classifiers on Retort's own CPU/CUDA backend.",
        discussion: """
            Also: retort backend-check --help (every op and model on a device, against the CPU) and \
            retort perf --help (the perf suite, with PyTorch beside it).
            """,
        version: "0.1.0",
        subcommands: [DevicesCommand.self, TokenizeCommand.self, GenerateCommand.self, FinetuneCommand.self, DistillCommand.self, AugmentCommand.self, EvalCommand.self,
                      PredictCommand.self, CompareCommand.self, QuantizeCommand.self, ExportCommand.self, ServeCommand.self])
}

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the compute devices and libraries Retort found (exits 0 either way).",
        discussion: """
            cpu: the OpenBLAS library loaded, the kernels it runs (chosen by Retort from CPUID, over an \
            inherited OPENBLAS_CORETYPE; RETORT_BLAS_CORETYPE forces one) and the thread count. cuda: each GPU, or why none can be used. \
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
                let target = try NVRTC.target(for: arch).get()
                let image = try NVRTC.compile(source: source, name: name, target: target)
                print("kernels  \(name) \(target): \(image.count) bytes")
            } catch {
                print("kernels  \(error)")
                throw ExitCode(1)
            }
        }
    }
}

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of each input text (a line, or a table's record), as one JSON array per line.",
        discussion: """
            Reads the texts given, --input, or standard input, one text per line. The ids are those of HF's tokenizer \
            for the model folder: WordPiece for a BERT-family folder (vocab.txt, tokenizer_config.json: \
            [CLS] text [SEP]; with --pair, two texts separated by a tab: [CLS] a [SEP] b [SEP]), \
            byte-level BPE for a folder with tokenizer.json (GPT-2's, SmolLM2's, Llama 3's or Qwen2's) \
            or vocab.json and merges.txt, and the tokenizer a .gguf file embeds. Byte-level BPE puts \
            the tokenizer's prefix (a BOS, where it has one: Llama 3) before each text; a pair is a's \
            ids then b's.

            A .csv, .tsv or .jsonl (or .json, read as JSONL) --input is read by column: one line of \
            ids per record — a record without text gives the special tokens alone, so the lines \
            stay the records' — from --text-column (default: text) and, for pairs, \
            --text-pair-column; a file without a header takes indexes (--text-column 0 \
            --text-pair-column 1).
            """)

    @Option(name: .long, help: "Model folder — vocab.txt (WordPiece), tokenizer.json or vocab.json + merges.txt (byte-level BPE), e.g. ~/.cache/retort/assets/gpt2-tokenizer — or a .gguf file.")
    var model: String

    @Option(name: .long, help: "Text file, one input per line (default: standard input); a .csv, .tsv, .jsonl or .json by column.")
    var input: String?

    @Argument(help: "Texts to tokenize, one line of ids each (instead of --input or standard input; with --pair, a tab separates a pair).")
    var texts: [String] = []

    @OptionGroup var columns: TextColumnOptions

    @Flag(name: .long, help: "Each line is a sentence pair separated by a tab (a table's pairs: --text-pair-column).")
    var pair = false

    @Option(name: .long, help: "Truncate to this many tokens, specials included (longest-first for pairs).")
    var maxLength: Int?

    func validate() throws {
        if let maxLength, maxLength < 1 { throw ValidationError("--max-length must be positive") }
        if !texts.isEmpty && input != nil { throw ValidationError("give texts or --input, not both") }
        if let newline = texts.first(where: { $0.contains(where: \.isNewline) }) {
            throw ValidationError("\"\(newline.prefix(40))…\" holds a line break: give each line as its own text")
        }
        if columns.given && !readsTable {
            throw ValidationError("--\(columns.textColumn != nil ? "text-column" : "text-pair-column") picks a column of a .csv, .tsv, .jsonl or .json --input; "
                                  + (input == nil ? "standard input is read as lines" : "\(input!) is read as lines"))
        }
        if pair && readsTable {
            throw ValidationError("--pair splits lines at a tab; \(input!) is read by column: name the second text with --text-pair-column "
                                  + "(a file without a header: --text-column 0 --text-pair-column 1)")
        }
    }

    /// Whether --input is a table read by column (by its extension).
    var readsTable: Bool {
        input.map(Dataset.isTable) ?? false
    }

    func run() throws {
        let folder = (model as NSString).expandingTildeInPath
        let manager = FileManager.default
        let encode: (String, String?) -> [Int32]
        var isFolder: ObjCBool = false
        if manager.fileExists(atPath: folder, isDirectory: &isFolder), !isFolder.boolValue {
            // (a GGUF file by its first bytes, whatever its name: llama.cpp's files are not always .gguf)
            guard FileHandle(forReadingAtPath: folder)?.readData(ofLength: 4) == Data("GGUF".utf8) else {
                throw UserError(description: "--model \(model): a file, not a model folder or a GGUF file (give the folder that holds "
                                + "vocab.txt, tokenizer.json or vocab.json and merges.txt, or a .gguf file)")
            }
            let bpe = try ByteLevelBPE(gguf: try GGUFFile(path: folder))
            encode = { bpe.encode($0, $1, maxLength: maxLength) }
        } else if manager.fileExists(atPath: folder + "/vocab.txt") {
            let wordPiece = try WordPieceTokenizer(folder: folder)
            let pairs = pair || columns.textPairColumn != nil
            if let maxLength, maxLength < (pairs ? 3 : 2) {
                throw UserError(description: "--max-length must leave room for the special tokens (at least \(pairs ? 3 : 2))")
            }
            encode = { wordPiece.encode($0, $1, maxLength: maxLength).ids }
        } else if manager.fileExists(atPath: folder + "/tokenizer.json") {
            let bpe = try ByteLevelBPE(tokenizerJSON: folder + "/tokenizer.json")
            encode = { bpe.encode($0, $1, maxLength: maxLength) }
        } else if manager.fileExists(atPath: folder + "/vocab.json") || manager.fileExists(atPath: folder + "/merges.txt") {
            let bpe = try ByteLevelBPE(folder: folder)
            encode = { bpe.encode($0, $1, maxLength: maxLength) }
        } else if !manager.fileExists(atPath: folder) {
            throw DataError("--model \(model): no such folder or file")
        } else {
            throw DataError("--model \(model): no tokenizer there (a folder with vocab.txt for WordPiece, tokenizer.json or vocab.json and merges.txt for byte-level BPE, or a .gguf file)")
        }
        if let input, readsTable {
            let examples = try Dataset.load(expand(input), columns: columns.spec())
            let output = examples.map { "[" + encode($0.text, $0.pair).map(String.init).joined(separator: ",") + "]\n" }.joined()
            FileHandle.standardOutput.write(Data(output.utf8))
            return
        }
        var output = ""
        func add(_ line: String, number: Int) throws {
            var text = line, second: String?
            if pair {
                let parts = text.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    let place = texts.isEmpty ? "\(input ?? "stdin"): line \(number)" : "text \(number) ('\(line.prefix(40))')"
                    throw DataError("\(place): --pair needs two texts separated by a tab")
                }
                text = String(parts[0])
                second = String(parts[1])
            }
            output += "[" + encode(text, second).map(String.init).joined(separator: ",") + "]\n"
        }
        if !texts.isEmpty {   // each argument a line, an empty one too (its special tokens alone)
            for (i, text) in texts.enumerated() { try add(text, number: i + 1) }
            FileHandle.standardOutput.write(Data(output.utf8))
            return
        }
        let bytes: [UInt8]
        if let input {
            bytes = try DelimitedText.read(expand(input))
        } else {   // checked as --input - is (it had read bytes that are not UTF-8 as �)
            do { bytes = try DelimitedText.read("-") } catch let error as DataError {
                throw UserError(description: "standard input\(error.description.dropFirst(1))")
            }
        }
        var lineNumber = 0
        for line in DelimitedText.lines(bytes) {
            lineNumber += 1
            let text = String(decoding: line, as: UTF8.self)
            // After the final newline, or an empty input: no line
            if text.isEmpty && line.endIndex == bytes.endIndex && (lineNumber > 1 || bytes.isEmpty) { continue }
            try add(text, number: lineNumber)
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }
}
