// The perf suite's protocol with its reference script, against a stand-in script that answers
// fixed times and logs what it was asked: each workload's reference is asked right after Retort's
// side, once per round (warm-up in full only in the first), then released; the ratio is the
// median round's; a reference that errs or dies leaves the rest of the table standing.
import Foundation
import XCTest

final class PerfReferenceTests: XCTestCase {
    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("retort-perf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    /// A reference script: answers 1000 ms for every workload (or an error for names containing
    /// `failing`, or exits after `answers` replies), logs each request, and prints a stray line.
    func standIn(failing: String = "(none)", answers: Int = 1000) throws -> String {
        let script = work.appendingPathComponent("reference.py")
        try """
        import json, sys
        log = open(sys.argv[0] + ".log", "w")
        print("a line that is not JSON", flush=True)
        print(json.dumps({"ready": True}), flush=True)
        answered = 0
        for line in sys.stdin:
            spec = json.loads(line)
            if answered == \(answers):
                sys.exit(3)
            answered += 1
            if spec.get("op") == "release":
                log.write("release\\n"); log.flush()
                print(json.dumps({"released": True}), flush=True)
                continue
            log.write(f"{spec['name']} warmup={spec['warmup']} reps={spec['reps']}\\n"); log.flush()
            if "\(failing)" in spec["name"]:
                print(json.dumps({"name": spec["name"], "error": "no reference for this one here"}), flush=True)
            else:
                print(json.dumps({"name": spec["name"], "ms": 1000.0, "impl": "stand-in"}), flush=True)
        """.write(to: script, atomically: true, encoding: .utf8)
        return script.path
    }

    func perf(_ script: String, rounds: Int) throws -> (Int32, String, [[String: Any]]) {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "pass"]
        guard (try? probe.run()) != nil, ({ probe.waitUntilExit(); return probe.terminationStatus == 0 })() else {
            throw XCTSkip("python3 is not installed")
        }
        let json = work.appendingPathComponent("perf.json").path
        try? FileManager.default.removeItem(atPath: json)
        let (status, output) = try RetortProcess(["--quick", "--filter", "gelu fwd", "--rounds", "\(rounds)", "--python", "python3",
                                                  "--reference", script, "--json", json], executable: "Perf").finish()
        let lines = ((try? String(contentsOfFile: json, encoding: .utf8)) ?? "").split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return (status, output, objects)
    }

    func testEachWorkloadsReferenceIsAskedInTurnAndTheRatioIsTheMedianRounds() throws {
        let script = try standIn()
        let (status, output, rows) = try perf(script, rounds: 3)
        XCTAssertEqual(status, 0, output)
        let log = try String(contentsOfFile: script + ".log", encoding: .utf8).split(separator: "\n").map(String.init)
        let (forward, both) = ("gelu fwd n=3145728", "gelu fwd+bwd n=3145728")
        XCTAssertEqual(log, ["\(forward) warmup=3 reps=3", "\(forward) warmup=1 reps=3", "\(forward) warmup=1 reps=3", "release",
                             "\(both) warmup=3 reps=3", "\(both) warmup=1 reps=3", "\(both) warmup=1 reps=3", "release"], output)
        XCTAssertEqual(rows.count, 2, output)
        for row in rows {
            let ratios = try XCTUnwrap(row["round_ratios"] as? [Double], "\(row)")
            XCTAssertEqual(ratios.count, 3)
            XCTAssertEqual(row["ratio"] as? Double, ratios.sorted()[1], "the median round's ratio: \(row)")
            XCTAssertEqual(row["reference_ms"] as? Double, 1000)
            XCTAssertEqual(row["reference_impl"] as? String, "stand-in")
            // Each round pairs the reference's 1000 ms with Retort's own time in that round.
            let ms = try XCTUnwrap(row["ms"] as? Double)
            XCTAssertTrue(ratios.contains { abs(1000 / $0 - ms) < 1e-9 * ms }, "Retort's median round is one of its rounds: \(row)")
        }
        XCTAssertTrue(output.contains("ratio range") && output.contains("in 3 alternating rounds"), output)
    }

    func testAReferenceThatErrsOrDiesLeavesTheOtherRowsStanding() throws {
        let (status, output, rows) = try perf(try standIn(failing: "fwd+bwd"), rounds: 1)
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(rows.count, 2, output)
        XCTAssertEqual(rows.first { ($0["name"] as? String)?.contains("fwd+bwd") == false }?["reference_ms"] as? Double, 1000, output)
        XCTAssertNil(rows.first { ($0["name"] as? String)?.contains("fwd+bwd") == true }?["ratio"], output)
        XCTAssertTrue(output.contains("some references not measured: no reference for this one here"), output)
        XCTAssertFalse(output.contains("ratio range"), "one round: no range column: \(output)")

        // The script exits after answering the first workload and its release.
        let (dead, deadOutput, deadRows) = try perf(try standIn(answers: 2), rounds: 2)
        XCTAssertEqual(dead, 0, deadOutput)
        XCTAssertEqual(deadRows.count, 2, deadOutput)
        XCTAssertNotNil(deadRows.first { ($0["name"] as? String)?.contains("fwd+bwd") == false }?["ratio"], deadOutput)
        XCTAssertTrue(deadOutput.contains("reference script ended early (status 3); later workloads have no reference"), deadOutput)
    }
}
