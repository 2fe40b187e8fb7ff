// retort serve's HTTP side (Hummingbird 2): one model behind
//   GET  /             the page (ServePage.swift): a text box, a button, a bar per class
//   POST /v1/classify  {"texts": ["…", …]} → {"model", "results": [{"label", "probabilities": {label: p}, "truncated"}]}
//                      (truncated: the text was over the model's max_tokens; only its first tokens were read)
//   GET  /v1/model     name, labels, parameters, size, device, precision, batching and its counters
//   GET  /healthz      {"status": "ok"}
// (HEAD of the three GET routes: 200, their headers, no body.)
// Every error is JSON, {"error": {"status", "message"}}: malformed JSON, wrong types or an empty
// list or text → 400; a body (by its Content-Length, before it is read), a text or a list over
// its limit → 413; another method on a route → 405 with Allow; an unknown route → 404. Requests reach the model through
// BatchingClassifier, which coalesces concurrent ones into one forward pass. SIGTERM or Ctrl-C:
// the server stops accepting, answers what is in flight, then returns.
import Foundation
import Hummingbird
import Logging
import Train

/// What GET /v1/model reports.
public struct ModelDescription: Sendable {
    public var name: String, family: String, labels: [String], parameters: Int, megabytes: Double
    public var device: String, precision: String, maxTokens: Int
    public init(name: String, family: String, labels: [String], parameters: Int, megabytes: Double, device: String, precision: String,
                maxTokens: Int) {
        self.name = name; self.family = family; self.labels = labels; self.parameters = parameters; self.megabytes = megabytes
        self.device = device; self.precision = precision; self.maxTokens = maxTokens
    }
}

/// What one request may carry.
public struct ServeLimits: Sendable {
    public var maxTexts: Int, maxTextCharacters: Int, maxBodyBytes: Int
    public init(maxTexts: Int = 64, maxTextCharacters: Int = 2000, maxBodyBytes: Int = 1 << 20) {
        self.maxTexts = maxTexts; self.maxTextCharacters = maxTextCharacters; self.maxBodyBytes = maxBodyBytes
    }
}

/// An error answered as JSON with its status.
struct APIError: Error {
    let status: HTTPResponse.Status
    let message: String
}

public enum ClassifierServer {
    /// Serves until SIGTERM or SIGINT, then finishes what is in flight and stops the batcher.
    /// `started` gets the bound port (port 0 picks a free one).
    public static func run(_ batcher: BatchingClassifier, model: ModelDescription, limits: ServeLimits, host: String, port: Int,
                           idleSeconds: Int = 30, started: @escaping @Sendable (Int) -> Void) async throws {
        var logger = Logger(label: "retort-serve")
        logger.logLevel = .warning
        // A connection that sends nothing for idleSeconds — idle between requests, or stalled in
        // the middle of one — is closed: a slow or stuck client can neither hold a connection
        // open forever nor keep a stopping server waiting for its request.
        let app = Application(router: router(batcher, model: model, limits: limits),
                              server: .http1(configuration: .init(idleTimeout: .seconds(Int64(idleSeconds)))),
                              configuration: .init(address: .hostname(host, port: port), serverName: "retort"),
                              onServerRunning: { channel in started(channel.localAddress?.port ?? port) }, logger: logger)
        defer { batcher.stop() }
        try await app.runService()
    }

    static func router(_ batcher: BatchingClassifier, model: ModelDescription, limits: ServeLimits) -> Router<BasicRequestContext> {
        let router = Router()
        router.middlewares.add(JSONErrors())
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: ServePage.html)))
        }
        router.get("/healthz") { _, _ in json(["status": "ok"]) }
        // Probes and uptime checkers that send HEAD; other methods on these routes are not allowed.
        for (path, type) in [("/", "text/html; charset=utf-8"), ("/healthz", "application/json"), ("/v1/model", "application/json")] {
            router.head(RouterPath(path)) { _, _ in Response(status: .ok, headers: [.contentType: type]) }
            notAllowed(router, path, [.post, .put, .patch, .delete, .options], allow: "GET, HEAD", hint: "")
        }
        router.get("/v1/model") { _, _ in
            let c = batcher.snapshot
            return json(["name": model.name, "family": model.family, "labels": model.labels, "parameters": model.parameters,
                         "megabytes": (model.megabytes * 10).rounded() / 10, "device": model.device, "precision": model.precision,
                         "max_tokens": model.maxTokens,
                         "batching": ["max_batch": batcher.maxBatch, "max_wait_ms": batcher.maxWait * 1000, "requests": c.requests,
                                      "texts": c.texts, "batches": c.batches, "largest_batch": c.largestBatch] as [String: Any],
                         "limits": ["max_texts": limits.maxTexts, "max_text_characters": limits.maxTextCharacters,
                                    "max_body_bytes": limits.maxBodyBytes]])
        }
        // GET: a browser opening the API's address.
        notAllowed(router, "/v1/classify", [.get, .head, .put, .patch, .delete, .options], allow: "POST",
                   hint: ", with a JSON body {\"texts\": [\"…\"]}")
        router.post("/v1/classify") { request, _ in
            let texts = try await parseTexts(request, limits: limits)
            let predictions = try await batcher.classify(texts)
            let results = predictions.map { p -> [String: Any] in
                ["label": p.label, "probabilities": labelledProbabilities(p.probabilities, names: batcher.labelNames),
                 "truncated": p.truncated]
            }
            return json(["model": model.name, "results": results])
        }
        return router
    }

    /// 405 with Allow for `methods` on `path`.
    static func notAllowed(_ router: Router<BasicRequestContext>, _ path: String, _ methods: [HTTPRequest.Method], allow: String, hint: String) {
        for method in methods {
            router.on(RouterPath(path), method: method) { _, _ in
                var response = JSONErrors.answer(.methodNotAllowed, "\(method) \(path): this route takes \(allow)\(hint)")
                response.headers[.allow] = allow
                return response
            }
        }
    }

    /// The texts of a classify request, or the APIError that says what is wrong with it.
    static func parseTexts(_ request: Request, limits: ServeLimits) async throws -> [String] {
        // A body announced over the limit is refused before any of it is read (the client may be waiting to send it).
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limits.maxBodyBytes {
            throw APIError(status: .contentTooLarge, message: "the request body is over \(limits.maxBodyBytes) bytes")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limits.maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw APIError(status: .contentTooLarge, message: "the request body is over \(limits.maxBodyBytes) bytes")
        }
        let bytes = body.getBytes(at: body.readerIndex, length: body.readableBytes) ?? []
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed) else {
            throw APIError(status: .badRequest, message: "the body is not valid JSON; send {\"texts\": [\"some text\", …]}")
        }
        guard let fields = object as? [String: Any], let value = fields["texts"] else {
            throw APIError(status: .badRequest, message: "expected a JSON object with \"texts\": a list of strings")
        }
        guard let list = value as? [Any], let texts = list as? [String], list.allSatisfy({ $0 is String }) else {
            throw APIError(status: .badRequest, message: "\"texts\" must be a list of strings")
        }
        guard !texts.isEmpty else { throw APIError(status: .badRequest, message: "\"texts\" is empty; send at least one text") }
        guard texts.count <= limits.maxTexts else {
            throw APIError(status: .contentTooLarge, message: "\(texts.count) texts in one request; at most \(limits.maxTexts)")
        }
        if let empty = texts.firstIndex(where: { $0.allSatisfy(\.isWhitespace) }) {   // nothing to classify: its label would mean nothing
            throw APIError(status: .badRequest, message: "texts[\(empty)] is empty; send some text")
        }
        if let long = texts.firstIndex(where: { $0.count > limits.maxTextCharacters }) {
            throw APIError(status: .contentTooLarge,
                           message: "texts[\(long)] has \(texts[long].count) characters; at most \(limits.maxTextCharacters)")
        }
        return texts
    }
}

/// A JSON response.
func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
        // Only numbers JSON cannot hold (NaN, infinity: logits that overflowed) get here.
        let body = #"{"error":{"message":"the answer holds numbers JSON cannot carry (NaN or infinity)","status":500}}"#
        return Response(status: .internalServerError, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Every error as {"error": {"status", "message"}} with its status; nothing else escapes.
struct JSONErrors: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.answer(error.status, error.message)
        } catch let error as HTTPError {
            let message = error.status == .notFound ? "no route \(request.method) \(request.uri.path); see GET / for the API" : error.body
            return Self.answer(error.status, message ?? error.status.reasonPhrase)
        } catch let error as any HTTPResponseError {
            return Self.answer(error.status, error.status.reasonPhrase)
        } catch is CancellationError {
            return Self.answer(.serviceUnavailable, "the server is stopping")
        } catch {
            return Self.answer(.internalServerError, "\(error)")
        }
    }

    static func answer(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["error": ["status": status.code, "message": message] as [String: Any]], status: status)
    }
}
