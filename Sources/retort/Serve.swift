// retort serve: one classifier behind a web page and a JSON API, concurrent requests batched.
import ArgumentParser
import Backend
import Foundation
import Models
import Serve
import Train

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a classifier: a web page, and a JSON API that batches concurrent requests.",
        discussion: """
            Example:
              retort serve --model runs/hate-speech/student
              then open http://127.0.0.1:8080/ in a browser, or:
              curl -s localhost:8080/v1/classify -d '{"texts": ["I hate you"]}'

            Routes: GET / (the page), POST /v1/classify ({"texts": [...]} → a label and the \
            probability of each class per text), GET /v1/model (name, labels, parameters, size, \
            device, precision, batching counters), GET /healthz. Errors are JSON with their status \
            (400 malformed, 413 too large, 405 wrong method, 404 unknown route). Concurrent requests are coalesced \
            into one forward pass of up to --max-batch texts; an idle model waits at most \
            --max-wait-ms for more before it runs. SIGTERM or Ctrl-C: no new connections, the \
            requests in flight are answered, then it exits (a second signal, or --idle-timeout + 15 \
            s, ends it at once); a connection silent for --idle-timeout is closed. It listens on 127.0.0.1 unless --host \
            says otherwise (0.0.0.0: every interface).
            """)

    @Option(name: .long, help: "Classifier folder (fine-tuned, distilled or quantized; BERT family, a decoder fine-tuned as a classifier, or a recurrent student).")
    var model: String
    @Option(name: .long, help: "Address to listen on.") var host = "127.0.0.1"
    @Option(name: .long, help: "Port (0: any free port, printed at start).") var port = 8080
    @Option(name: .long, help: "The most texts one forward pass takes.") var maxBatch = 32
    @Option(name: .long, help: "How long an idle model waits for more requests before it runs, in milliseconds.") var maxWaitMs = 2.0
    @Option(name: .long, help: "The most texts one request may carry.") var maxTexts = 64
    @Option(name: .long, help: "The longest text, in characters.") var maxTextCharacters = 2000
    @Option(name: .long, help: "The largest request body, in bytes.") var maxBodyBytes = 1 << 20
    @Option(name: .long, help: "Seconds a connection may send nothing (idle, or stalled in a request) before it is closed.")
    var idleTimeout = 30
    @Option(name: .long, help: "Tokens per text, specials included (default 128, or the model's maximum when smaller).") var maxLength: Int?
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not a port number (0…65535)") }
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        try checkCounts([("--max-batch", maxBatch)])
        guard (1...3600).contains(idleTimeout) else { throw ValidationError("--idle-timeout must be 1 to 3600 seconds") }
        try checkMaxLength(maxLength)
        guard maxWaitMs >= 0, maxWaitMs <= 1000 else { throw ValidationError("--max-wait-ms must be between 0 and 1000") }
        try checkModelArgument(model, flag: "--model", checkClassifierFolder)
        guard maxTexts >= 1, maxTextCharacters >= 1, maxBodyBytes >= 64 else {
            throw ValidationError("--max-texts and --max-text-characters must be at least 1, --max-body-bytes at least 64")
        }
    }

    /// The model's family as /v1/model names it: bert, mpnet, a decoder's model_type, or a recurrent student's cell.
    static func family(_ classifier: TextClassifier, _ config: BertConfig?) -> String {
        if let r = classifier as? RecurrentClassifier { return (r.model.config.bidirectional ? "bi" : "") + r.model.config.cell.rawValue }
        if let d = classifier as? DecoderClassifier { return d.model.config.modelType }
        return config?.family.rawValue ?? "unknown"
    }

    /// A socket's failure to listen, in words a user can act on (the server library's text names its calls).
    static func listenReason(_ text: String, host: String, port: Int) -> String {
        text.contains("Address already in use") ? "port \(port) is in use (another server?); choose another with --port"
            : text.contains("Permission denied") ? "permission denied (ports below 1024 need root); choose another with --port"
            : text.contains("Cannot assign requested address") ? "\(host) is not an address of this machine; see --host"
            : text.contains("UnknownHost") ? "\(host) is not a host name or address (127.0.0.1: this machine only; 0.0.0.0: every interface)"
            : text
    }

    /// Why binding host:port fails now (strerror's text, or "UnknownHost"), nil if it binds: a
    /// socket bound as the server binds it (SO_REUSEADDR) and closed at once. Port 0 always binds.
    static func bindFailure(host: String, port: Int) -> String? {
        guard port != 0 else { return nil }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let info = found else { return "UnknownHost" }
        defer { freeaddrinfo(found) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { return nil }   // no socket to try with: the server's own bind will say
        defer { close(fd) }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        return bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 ? nil : String(cString: strerror(errno))
    }

    func run() throws {
        // A port that is taken (or a host that is not this machine's) is said before the model loads.
        if let failure = Self.bindFailure(host: host, port: port) {
            throw UserError(description: "cannot serve on \(host):\(port): \(Self.listenReason(failure, host: host, port: port))")
        }
        let folder = (expand(model) as NSString).standardizingPath
        let backend = try withFlags { try deviceOptions.backend() }
        let classifier = try withFlags { try loadTextClassifier(folder: folder, maxLength: maxLength, backend: backend) }
        let config = try? BertConfig(path: (folder as NSString).appendingPathComponent("config.json"))
        let description = ModelDescription(
            name: modelName(folder: folder), family: Self.family(classifier, config), labels: classifier.labelNames,
            parameters: classifier.parameterCount, megabytes: ComparisonReport.weightMegabytes(folder), device: backend.kind.rawValue,
            precision: ComparisonReport.quantization(folder) ?? "fp32", maxTokens: classifier.maxLength)
        let (host, maxBatch, maxWaitMs) = (host, maxBatch, maxWaitMs)
        try withFlags { try checkBatchFits(classifier, backend: backend, batch: maxBatch, flag: "--max-batch") }
        let batcher = try withFlags {
            do { return try BatchingClassifier(classifier, maxBatch: maxBatch, maxWait: maxWaitMs / 1000) } catch {
                throw UserError(description: "--max-batch \(maxBatch): \(error); lower --max-batch (or --max-length)")
            }
        }
        let limits = ServeLimits(maxTexts: maxTexts, maxTextCharacters: maxTextCharacters, maxBodyBytes: maxBodyBytes)
        let outcome = ServeOutcome()
        let done = DispatchSemaphore(value: 0)
        let watcher = StopWatcher(grace: idleTimeout + 15)
        Task {
            do {
                try await ClassifierServer.run(batcher, model: description, limits: limits, host: host, port: port,
                                               idleSeconds: idleTimeout) { bound in
                    print("retort serve: \(description.name) (\(description.family), \(description.labels.count) labels: "
                          + "\(description.labels.joined(separator: ", ")); \(description.precision) on \(description.device)) "
                          + "at http://\(host):\(bound)/ — batches of up to \(counted(maxBatch, "text")), waiting up to \(maxWaitMs) ms; "
                          + "Ctrl-C or SIGTERM stops it")
                    fflush(nil)
                }
            } catch {
                outcome.error = error
            }
            done.signal()
        }
        done.wait()
        withExtendedLifetime(watcher) {}
        if let error = outcome.error {   // the port taken since the check, or another failure to listen
            throw UserError(description: "cannot serve on \(host):\(port): \(Self.listenReason("\(error)", host: host, port: port))")
        }
        let c = batcher.snapshot
        print("retort serve: stopped after \(counted(c.requests, "classify request")) ("
              + (c.requests == 0 ? "no text classified)"
                 : "\(counted(c.texts, "text")) in \(counted(c.batches, "forward pass", plural: "forward passes")), the largest of \(counted(c.largestBatch, "text")))"))
    }
}

/// The server stops on its first SIGTERM or Ctrl-C once what is in flight is answered; this says
/// so, and ends the process at once on a second signal or when `grace` seconds have passed (a
/// request that never finishes cannot hold a stopping server).
private final class StopWatcher: @unchecked Sendable {
    private let queue = DispatchQueue(label: "retort-serve-stop")
    private var sources: [DispatchSourceSignal] = []
    private var received = 0

    init(grace: Int) {
        for number in [SIGTERM, SIGINT] {
            // Not the default action (end the process) before the source is registered (libdispatch
            // then installs its own handler, which feeds this source and the server's alike).
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                received += 1
                if received > 1 { Self.end("stopped at once (a second signal), without the requests still open") }
                printError("retort serve: stopping: answering the requests in flight (a second Ctrl-C or SIGTERM stops at once; "
                           + "at most \(grace) s)")
                queue.asyncAfter(deadline: .now() + .seconds(grace)) { Self.end("requests were still open after \(grace) s; stopped without them") }
            }
            source.resume()
            sources.append(source)
        }
    }

    deinit { sources.forEach { $0.cancel() } }

    /// Says why and ends the process now (_exit: the server's and the kernels' threads are still
    /// running, and exit's teardown under them could crash).
    private static func end(_ why: String) -> Never {
        printError("retort serve: " + why)
        fflush(nil)
        _exit(1)
    }
}

/// How the server task ended (set by it before it signals).
private final class ServeOutcome: @unchecked Sendable {
    var error: (any Error)?
}
