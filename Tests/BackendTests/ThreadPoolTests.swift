// The CPU kernels' thread pool under a burst of back-to-back jobs of changing sizes: every chunk
// of every job runs exactly once, inside its job's range, with its job's context — never a
// straggler running a finished job's task (which once crashed a training run).
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
}
