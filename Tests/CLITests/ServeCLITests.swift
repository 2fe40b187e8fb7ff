// retort serve on loopback, with the tiny golden classifier: the JSON API answers as
// `retort predict` does, every bad request gets its JSON error and status and leaves the server
// up, concurrent requests share forward passes without changing any answer, SIGTERM answers what
// is in flight before the process exits, and headless Chromium (where installed) renders the
// page's answer for a text.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import XCTest

final class ServeCLITests: TinyRunTestCase {
    /// A started server: its process and port.
    struct Server {
        let process: RetortProcess
        let port: Int
        var base: String { "http://127.0.0.1:\(port)" }
    }

    var servers: [Server] = []

    override func tearDownWithError() throws {
        for server in servers where server.process.process.isRunning { server.process.process.terminate() }
        for server in servers { _ = server.process.finish() }
        try super.tearDownWithError()
    }

    /// `retort serve --port 0` on `model`, once it says where it listens.
    func startServer(_ extra: [String] = [], model: String? = nil) throws -> Server {
        let process = try RetortProcess(["serve", "--model", model ?? teacher, "--port", "0", "--device", "cpu", "--threads", "1"] + extra)
        let deadline = Date(timeIntervalSinceNow: 60)
        while Date() < deadline {
            let text = (try? String(contentsOf: process.output, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"at http://127\.0\.0\.1:(\d+)/"#, options: .regularExpression) {
                let port = Int(text[range].split(separator: ":").last!.dropLast())!
                let server = Server(process: process, port: port)
                servers.append(server)
                return server
            }
            if !process.process.isRunning { XCTFail("retort serve exited: \(process.finish().1)"); throw XCTSkip("no server") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        process.process.terminate()
        XCTFail("retort serve did not start in 60 s: \(process.finish().1)")
        throw XCTSkip("no server")
    }

    let texts = ["w1 w2 a b", "c d e f g h", "w40 w41", "x y z w88 w3 w7 w9", "q", "w5 w6 w7 w8 w9 w10 w11 w12 w13 w14"]

    func testTheAPIAnswersAsPredictDoes() throws {
        let server = try startServer()
        let (health, ok) = try request(server.base + "/healthz")
        XCTAssertEqual(health, 200)
        XCTAssertEqual(try object(ok)["status"] as? String, "ok")
        let model = try object(try request(server.base + "/v1/model").1)
        XCTAssertEqual(model["name"] as? String, "tiny-bert")
        XCTAssertEqual(model["labels"] as? [String], ["LABEL_0", "LABEL_1", "LABEL_2"])
        XCTAssertEqual(model["parameters"] as? Int, 81795)
        XCTAssertEqual(model["precision"] as? String, "fp32")
        XCTAssertEqual(model["device"] as? String, "cpu")

        // The last text is longer than the model's 40 positions: both say it was cut.
        let texts = self.texts + [(1...60).map { "w\($0)" }.joined(separator: " ")]
        let results = try classify(server, texts)
        let input = work.appendingPathComponent("texts.txt")
        try texts.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["predict", "--model", teacher, "--input", input.path, "--json", "--threads", "1", "--device", "cpu"])
        XCTAssertEqual(status, 0, output)
        let predicted = try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { try object(Data($0.utf8)) }
        XCTAssertEqual(results.count, texts.count)
        for (served, reference) in zip(results, predicted) {
            XCTAssertEqual(served["label"] as? String, reference["label"] as? String)
            let p = try XCTUnwrap(served["probabilities"] as? [String: Double])
            let q = try XCTUnwrap(reference["probabilities"] as? [String: Double])
            XCTAssertEqual(Set(p.keys), ["LABEL_0", "LABEL_1", "LABEL_2"])
            XCTAssertEqual(Set(q.keys), Set(p.keys))
            for name in p.keys { XCTAssertEqual(p[name]!, q[name]!, accuracy: 1e-5) }
            XCTAssertEqual(served["truncated"] as? Bool, reference["truncated"] as? Bool)
        }
        XCTAssertEqual(results.map { $0["truncated"] as? Bool }, texts.indices.map { $0 == texts.count - 1 })
        let page = String(decoding: try request(server.base + "/").1, as: UTF8.self)
        XCTAssertTrue(page.contains("<textarea id=\"text\"") && page.contains("/v1/classify"), page)
    }

    func testBadRequestsGetJSONErrorsAndTheServerStaysUp() throws {
        let server = try startServer(["--max-texts", "4", "--max-text-characters", "50", "--max-body-bytes", "4096"])
        for (path, method, body, status, message) in [
            ("/v1/classify", "POST", "{\"texts\": [\"a\"", 400, "not valid JSON"),
            ("/v1/classify", "POST", "[\"a\"]", 400, "a JSON object with \"texts\""),
            ("/v1/classify", "POST", "null", 400, "a JSON object with \"texts\""),   // valid JSON, not an object
            ("/v1/classify", "POST", "{\"text\": \"a\"}", 400, "a JSON object with \"texts\""),
            ("/v1/classify", "POST", "{\"texts\": \"a\"}", 400, "must be a list of strings"),
            ("/v1/classify", "POST", "{\"texts\": [\"a\", 3]}", 400, "must be a list of strings"),
            ("/v1/classify", "POST", "{\"texts\": []}", 400, "is empty"),
            ("/v1/classify", "POST", "{\"texts\": [\"w5\", \" \"]}", 400, "texts[1] is empty; send some text"),
            ("/v1/classify", "POST", "{\"texts\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 413, "5 texts in one request; at most 4"),
            ("/v1/classify", "POST", "{\"texts\": [\"\(String(repeating: "a", count: 51))\"]}", 413, "texts[0] has 51 characters; at most 50"),
            ("/v1/classify", "POST", "{\"texts\": [\"\(String(repeating: "a b ", count: 2000))\"]}", 413, "over 4096 bytes"),
            ("/v1/nothing", "GET", nil, 404, "no route GET /v1/nothing"),
            ("/v1/classify", "GET", nil, 405, "GET /v1/classify: this route takes POST, with a JSON body"),
            ("/v1/classify", "PUT", "{\"texts\": [\"a\"]}", 405, "PUT /v1/classify: this route takes POST"),
            ("/v1/model", "POST", "{}", 405, "POST /v1/model: this route takes GET, HEAD"),
            ("/healthz", "DELETE", nil, 405, "DELETE /healthz: this route takes GET, HEAD"),
            ("/v1/classify", "OPTIONS", nil, 405, "OPTIONS /v1/classify: this route takes POST"),
        ] as [(String, String, String?, Int, String)] {
            let (code, data) = try request(server.base + path, method: method, body: body.map { Data($0.utf8) })
            XCTAssertEqual(code, status, "\(method) \(path) \(body ?? "")")
            let error = try XCTUnwrap(try object(data)["error"] as? [String: Any], String(decoding: data, as: UTF8.self))
            XCTAssertEqual(error["status"] as? Int, status)
            XCTAssertTrue((error["message"] as? String ?? "").contains(message), "\(error)")
        }
        for path in ["/healthz", "/", "/v1/model"] { XCTAssertEqual(try request(server.base + path, method: "HEAD").0, 200, "a HEAD probe of \(path)") }
        // A body announced over the limit is answered at once, before the client sends it.
        let reply = try exchange(port: server.port, "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 + "Content-Length: 2000000\r\n\r\n{\"texts\": [")
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 413") && reply.contains("over 4096 bytes"), reply)
        XCTAssertEqual(try classify(server, ["w1 w2"]).count, 1)
        XCTAssertTrue(server.process.process.isRunning)
    }

    func testConcurrentRequestsShareForwardPassesWithTheSameAnswers() throws {
        let server = try startServer(["--max-wait-ms", "100", "--max-batch", "16"])
        let alone = try texts.map { try classify(server, [$0])[0] }
        // 24 threads released together, each with its own request (over up to 64 connections).
        let requests = 24, texts = self.texts
        nonisolated(unsafe) var answers = [[String: Any]?](repeating: nil, count: requests)
        let lock = NSLock(), go = DispatchSemaphore(value: 0), done = DispatchGroup()
        for i in 0..<requests {
            done.enter()
            Thread.detachNewThread {
                go.wait()
                let answer = try? classify(server, [texts[i % texts.count]])
                lock.lock(); answers[i] = answer?.first; lock.unlock()
                done.leave()
            }
        }
        for _ in 0..<requests { go.signal() }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        for i in 0..<requests {
            let answer = try XCTUnwrap(answers[i], "request \(i)")
            XCTAssertEqual(answer["label"] as? String, alone[i % texts.count]["label"] as? String)
            let (p, q) = (try XCTUnwrap(answer["probabilities"] as? [String: Double]), try XCTUnwrap(alone[i % texts.count]["probabilities"] as? [String: Double]))
            for (name, value) in q { XCTAssertEqual(p[name]!, value, accuracy: 1e-5, "padding in a batch changed \(texts[i % texts.count])") }
        }
        let batching = try XCTUnwrap(try object(try request(server.base + "/v1/model").1)["batching"] as? [String: Any])
        let (batches, largest) = (try XCTUnwrap(batching["batches"] as? Int), try XCTUnwrap(batching["largest_batch"] as? Int))
        XCTAssertEqual(batching["requests"] as? Int, texts.count + requests)
        XCTAssertLessThan(batches, texts.count + requests, "no two requests shared a forward pass")
        XCTAssertGreaterThan(largest, 2, "at most two requests shared a pass")
        XCTAssertLessThanOrEqual(largest, 16)
    }

    func testSIGTERMAnswersTheRequestInFlightThenExits() throws {
        let server = try startServer(["--max-wait-ms", "800", "--max-batch", "8"])
        nonisolated(unsafe) var answer: (Int, Data)?
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            answer = try? request(server.base + "/v1/classify", method: "POST", body: Data("{\"texts\": [\"w1 w2\"]}".utf8))
            finished.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)   // the request now waits in the batcher (800 ms)
        kill(server.process.process.processIdentifier, SIGTERM)
        XCTAssertEqual(finished.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(answer?.0, 200, answer.map { String(decoding: $0.1, as: UTF8.self) } ?? "no answer")
        let (status, output) = server.process.finish()
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("stopped after 1 classify request ("), output)
    }

    /// A client that announces a body and stops sending it: its connection is closed after
    /// --idle-timeout, and a SIGTERM meanwhile ends the server once it is; a second signal ends
    /// a stopping server at once.
    func testAStalledClientIsClosedAndCannotHoldAStop() throws {
        func stall(_ port: Int) throws -> Int32 {
            let fd = try connectLoopback(port)
            let head = "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te"
            _ = head.withCString { send(fd, $0, strlen($0), 0) }
            return fd
        }
        // Closed after the idle timeout (1 s here); then SIGTERM stops the server at once, exit 0.
        let server = try startServer(["--idle-timeout", "1"])
        let fd = try stall(server.port)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let started = Date()
        var byte: UInt8 = 0
        XCTAssertEqual(recv(fd, &byte, 1, 0), 0, "the server should close the stalled connection")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        kill(server.process.process.processIdentifier, SIGTERM)
        let (status, output) = server.process.finish()
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("retort serve: stopping: answering the requests in flight"), output)
        // A stalled client under the default timeout: a second SIGTERM ends the stop at once.
        let waiting = try startServer()
        let other = try stall(waiting.port)
        defer { close(other) }
        Thread.sleep(forTimeInterval: 0.3)
        kill(waiting.process.process.processIdentifier, SIGTERM)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(waiting.process.process.isRunning, "the first SIGTERM waits for the stalled request")
        let second = Date()
        kill(waiting.process.process.processIdentifier, SIGTERM)
        let (forced, forcedOutput) = waiting.process.finish()
        XCTAssertEqual(forced, 1, forcedOutput)
        XCTAssertLessThan(Date().timeIntervalSince(second), 5)
        XCTAssertTrue(forcedOutput.contains("stopped at once (a second signal)"), forcedOutput)
    }

    func testBadFlagsAreOneLine() throws {
        let (held, heldPort) = try listenLoopback()   // a port another server holds: said before the model loads
        defer { close(held) }
        for (arguments, message) in [(["serve", "--model", teacher, "--port", "70000"], "--port 70000 is not a port number"),
                                     (["serve", "--model", teacher, "--port", "\(heldPort)"], "port \(heldPort) is in use (another server?)"),
                                     (["serve", "--model", teacher, "--max-batch", "0"], "--max-batch must be at least 1"),
                                     (["serve", "--model", work.path], "config.json")] {
            let (status, output) = try retort(arguments)
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(message), output)
            let lines = output.split(separator: "\n").filter { !$0.hasPrefix("retort: c") && !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") }
            XCTAssertEqual(lines.count, 1, output)
        }
    }

    /// Headless Chromium loads the page with a text, which the page types into its box and sends
    /// with its button (`/?text=`); the label it draws is the API's, and its note that the text was cut.
    func testThePageShowsTheLabelInChromium() throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("chromium is not installed (make test installs Debian's package)")
        }
        let server = try startServer()
        let text = (5...60).map { "w\($0)" }.joined(separator: " ")   // over the model's 40 positions: the page says it was cut
        let expected = try XCTUnwrap(try classify(server, [text])[0]["label"] as? String)
        let browser = Process()
        browser.executableURL = URL(fileURLWithPath: chromium)
        browser.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=15000",
                             "--user-data-dir=\(work.appendingPathComponent("chromium").path)",
                             "--dump-dom", server.base + "/?text=" + text.replacingOccurrences(of: " ", with: "%20")]
        let output = Pipe()
        browser.standardOutput = output
        browser.standardError = FileHandle.nullDevice
        try browser.run()
        let dom = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        browser.waitUntilExit()
        XCTAssertTrue(dom.contains("<div id=\"label\">\(expected)</div>"), dom)
        for label in ["LABEL_0", "LABEL_1", "LABEL_2"] { XCTAssertTrue(dom.contains("data-label=\"\(label)\""), label) }
        XCTAssertTrue(dom.contains("tiny-bert"), "the title from /v1/model")
        XCTAssertTrue(dom.contains("<p id=\"truncated\">This text is longer than the model reads (40 tokens)"), dom)
    }
}

/// (status, body) of one HTTP request.
/// Up to 64 connections to one host (the concurrency test's 24 requests at once).
private let session: URLSession = {
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpMaximumConnectionsPerHost = 64
    return URLSession(configuration: configuration)
}()

private func request(_ url: String, method: String = "GET", body: Data? = nil) throws -> (Int, Data) {
    var request = URLRequest(url: URL(string: url)!, timeoutInterval: 30)
    request.httpMethod = method
    request.httpBody = body
    if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: (Int, Data)?
    nonisolated(unsafe) var failure: (any Error)?
    session.dataTask(with: request) { data, response, error in
        if let error { failure = error } else { result = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()) }
        done.signal()
    }.resume()
    done.wait()
    if let failure { throw failure }
    return result!
}

/// A socket listening on a free port of 127.0.0.1, and that port (the caller closes it).
private func listenLoopback() throws -> (Int32, Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var size = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &size) == 0 }
    }
    guard bound else { close(fd); throw POSIXError(.EADDRINUSE) }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A TCP connection to 127.0.0.1:port (the caller closes it).
private func connectLoopback(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// What the server answers within 10 s to `text` sent as is on a new connection.
private func exchange(port: Int, _ text: String) throws -> String {
    let fd = try connectLoopback(port)
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var reply: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
    while !String(decoding: reply, as: UTF8.self).contains("}}") {   // the JSON error's end
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { break }
        reply += buffer[0..<n]
    }
    return String(decoding: reply, as: UTF8.self)
}

private func object(_ data: Data) throws -> [String: Any] {
    try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], String(decoding: data, as: UTF8.self))
}

private func classify(_ server: ServeCLITests.Server, _ texts: [String]) throws -> [[String: Any]] {
    let (status, body) = try request(server.base + "/v1/classify", method: "POST",
                                     body: try JSONSerialization.data(withJSONObject: ["texts": texts]))
    XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
    return try XCTUnwrap(try object(body)["results"] as? [[String: Any]])
}
