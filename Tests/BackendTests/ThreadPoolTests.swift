// The CPU kernels' thread pool under a burst of back-to-back jobs of changing sizes: every chunk
// of every job runs exactly once, inside its job's range, with its job's context — never a
// straggler running a finished job's task (which once crashed a training run). Lanes
// (rt_parallel_teams, CPUBackend.forEachLane): each lane runs once, and the jobs a lane starts
// run on its team alone, every chunk once; products in a lane, split over a team when it has
// more than one thread, match a naive loop. (make test also runs these with 16 threads: teams.)
import Backend
import Kernels
import XCTest

struct PoolJob {
    var id: Int
    var n: Int64
    var seen: UnsafeMutablePointer<Int32>   // per item: how often it ran
    var violations: UnsafeMutablePointer<Int32>
}

final class ThreadPoolTests: XCTestCase {
    func testBackToBackJobsNeverRunAStaleOrOutOfRangeChunk() {
        let capacity = 4096
        let seen = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        let violations = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        defer { seen.deallocate(); violations.deallocate() }
        violations.pointee = 0
        var rng = SystemRandomNumberGenerator()
        // make test also runs this with RETORT_NUM_THREADS=16: oversubscribed threads are often
        // preempted mid-claim, which is when a stale claim could slip through.
        for id in 0..<20_000 {
            // Alternate small and large jobs so the chunk count changes every time.
            let n = Int64(id % 2 == 0 ? Int.random(in: 2...8, using: &rng) : Int.random(in: 200...capacity, using: &rng))
            seen.update(repeating: 0, count: capacity)
            var job = PoolJob(id: id, n: n, seen: seen, violations: violations)
            withUnsafeMutablePointer(to: &job) { pointer in
                rt_parallel_for(n, 1, { ctx, begin, end, _ in
                    let job = ctx!.assumingMemoryBound(to: PoolJob.self).pointee
                    if begin < 0 || end > job.n || begin >= end { job.violations.pointee += 1; return }
                    for i in Int(begin)..<Int(end) { job.seen[i] += 1 }
                }, pointer)
            }
            for i in 0..<Int(n) where seen[i] != 1 {
                XCTFail("job \(id): item \(i) ran \(seen[i]) times")
                return
            }
            XCTAssertEqual(violations.pointee, 0, "job \(id): a chunk outside the job's range ran")
            if violations.pointee != 0 { return }
        }
    }

    func testLanesRunOnceAndTheJobsTheyStartRunEveryChunkOnce() {
        let lanes = 3, items = 1_000
        let seen = UnsafeMutablePointer<Int32>.allocate(capacity: lanes * items)
        defer { seen.deallocate() }
        for round in 0..<200 {
            seen.update(repeating: 0, count: lanes * items)
            rt_parallel_teams(Int32(lanes), { ctx, lane, end, _ in
                precondition(end == lane + 1)
                let seen = ctx!.assumingMemoryBound(to: Int32.self) + Int(lane) * 1_000
                // Jobs of changing sizes and grains from inside the lane, as a layer's steps make.
                for job in 0..<10 {
                    rt_parallel_for(Int64(100 * (job + 1)), Int64(1 + job % 4), { ctx, begin, end, _ in
                        let seen = ctx!.assumingMemoryBound(to: Int32.self)
                        for i in Int(begin)..<Int(end) { seen[i] += 1 }
                    }, seen)
                }
            }, seen)
            // Item i of a lane ran once for each job at least i + 1 long: 10 − i/100 times.
            for lane in 0..<lanes {
                for i in 0..<items where seen[lane * items + i] != Int32(10 - i / 100) {
                    XCTFail("round \(round), lane \(lane): item \(i) ran \(seen[lane * items + i]) times, not \(10 - i / 100)")
                    return
                }
            }
        }
    }

    func testProductsInLanesMatchANaiveLoop() throws {
        let cpu = try CPUBackend()
        let (M, N, K) = (37, 70, 45)
        var rng = SystemRandomNumberGenerator()
        let shapes = [(false, false), (true, false), (false, true), (true, true)]
        let a = shapes.map { _ in (0..<M * K).map { _ in Float.random(in: -1...1, using: &rng) } }
        let b = shapes.map { _ in (0..<K * N).map { _ in Float.random(in: -1...1, using: &rng) } }
        let aT = try a.map { try cpu.upload($0) }, bT = try b.map { try cpu.upload($0) }
        let c = try shapes.map { _ in try cpu.zeros(M * N) }
        cpu.forEachLane(shapes.count) { lane in
            let (transA, transB) = shapes[lane]
            cpu.matmul(c[lane], aT[lane], bT[lane], bias: nil, Gemm(m: M, n: N, k: K, transA: transA, transB: transB))
        }
        for (lane, (transA, transB)) in shapes.enumerated() {
            let got = cpu.floats(c[lane])
            for m in 0..<M {
                for n in 0..<N {
                    var sum: Float = 0
                    for k in 0..<K { sum += a[lane][transA ? k * M + m : m * K + k] * b[lane][transB ? n * K + k : k * N + n] }
                    XCTAssertEqual(got[m * N + n], sum, accuracy: 1e-4, "lane \(lane) (transA \(transA), transB \(transB)): C[\(m),\(n)]")
                    if abs(got[m * N + n] - sum) > 1e-4 { return }
                }
            }
        }
    }
}
