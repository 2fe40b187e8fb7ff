// The processes of one data-parallel job, started and connected by Open MPI's `mpirun`: this
// process's rank, the job's size, its rank on its machine, and the collectives training needs
// (sum of gradients, small host all-reduces, a broadcast). Open MPI is loaded at run time
// (CBackend/mpi.c) and only when mpirun started this process, so a single process never needs it.
//
// Every wait is bounded: a collective that does not complete within `timeout` seconds (a rank
// died or hangs) throws CollectiveTimeout naming this rank and the operation, and the caller
// ends the job (`abort`). CPU tensors are reduced in place in host memory, in chunks of at most
// 2^30 elements (MPI counts are ints); a device's tensors go through host memory (NCCL is the
// faster path for CUDA; see docs/DATA-PARALLEL.md).
import CBackend
import Foundation

public final class ProcessGroup: @unchecked Sendable {
    public let rank, size: Int
    /// The rank among the job's processes on this machine, and their number (GPU choice, threads).
    public let localRank, localSize: Int
    /// Seconds any collective may wait for the other ranks.
    public var timeout: Double
    /// "Open MPI v4.1.4"
    public let library: String

    /// The job this process belongs to (set by `join`); nil for a process on its own.
    public private(set) nonisolated(unsafe) static var world: ProcessGroup?

    /// Rank 0: the one that evaluates, logs, prints and writes files.
    public var isPrimary: Bool { rank == 0 }

    /// One bounded wait's failure: which rank gave up on what.
    public struct CollectiveError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// An all-reduce or broadcast in flight (MPI_Request).
    public struct Request {
        var handle: UnsafeMutableRawPointer?
        let what: String
    }

    public enum Reduction: Int32 { case sum = 0, max = 1, min = 2 }

    /// The environment variables mpirun sets in each process it starts (Open MPI's names).
    public static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    /// Joins the job mpirun started this process in (MPI_Init) and makes it `world`; returns nil
    /// (and touches no MPI) when mpirun did not start it, or started it alone.
    @discardableResult
    public static func join() throws -> ProcessGroup? {
        if let world { return world }
        let env = ProcessInfo.processInfo.environment
        guard let sizeText = env["OMPI_COMM_WORLD_SIZE"], let expected = Int(sizeText), expected > 1 else { return nil }
        var rank: Int32 = 0, size: Int32 = 0
        var error = [CChar](repeating: 0, count: 512)
        if rt_mpi_init(&rank, &size, &error, error.count) != 0 {
            throw CollectiveError(description: "could not join the MPI job: " + Self.text(error))
        }
        let info = rt_mpi_load().pointee
        let timeout = env["RETORT_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? 900
        let group = ProcessGroup(rank: Int(rank), size: Int(size),
                                 localRank: env["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0,
                                 localSize: env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1,
                                 timeout: timeout > 0 ? timeout : 900,
                                 library: withUnsafeBytes(of: info.version) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        world = group
        return group
    }

    init(rank: Int, size: Int, localRank: Int, localSize: Int, timeout: Double, library: String) {
        self.rank = rank; self.size = size; self.localRank = localRank; self.localSize = localSize
        self.timeout = timeout; self.library = library
    }

    /// MPI_Finalize (every rank, at a normal exit).
    public static func leave() {
        guard world != nil else { return }
        rt_mpi_finalize()
    }

    /// Ends every process of the job (MPI_Abort) with `code`.
    public func abort(_ code: Int32) -> Never {
        fflush(nil)
        rt_mpi_abort(code)
        exit(code)   // not reached: rt_mpi_abort exits
    }

    // MARK: collectives

    private static let chunk = 1 << 30

    private static func text(_ error: [CChar]) -> String {
        String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func check(_ code: Int32, _ error: [CChar], _ what: String) throws {
        guard code == 0 else { throw CollectiveError(description: "rank \(rank): \(what) failed: \(Self.text(error))") }
    }

    /// Starts the in-place sum of a CPU tensor (its host memory) over every rank.
    public func startSum(_ t: Tensor, what: String) throws -> [Request] {
        precondition(t.dtype == .f32, "ProcessGroup sums f32 tensors")
        return try startSum(UnsafeMutablePointer<Float>(bitPattern: t.buffer.address)! + t.offset, count: t.count, what: what)
    }

    /// Starts the in-place sum of `count` floats of host memory, in chunks MPI's int counts hold.
    private func startSum(_ values: UnsafeMutablePointer<Float>, count: Int, what: String) throws -> [Request] {
        try stride(from: 0, to: count, by: Self.chunk).map { start in
            var request = Request(handle: nil, what: what)
            var error = [CChar](repeating: 0, count: 512)
            try check(rt_mpi_iallreduce_f32(values + start, Int32(min(Self.chunk, count - start)), Reduction.sum.rawValue, &request.handle,
                                            &error, error.count), error, what)
            return request
        }
    }

    /// Completes `requests` and sets them to done; throws CollectiveError after `timeout`.
    public func wait(_ requests: inout [Request]) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var spins = 0
        while !requests.isEmpty {
            try poll(&requests)
            if requests.isEmpty { return }
            spins += 1
            if spins > 1000 {   // a long wait (the primary evaluating, a slow rank): stop burning the core
                usleep(200)
                if spins % 1000 == 0, Date() > deadline {
                    throw CollectiveError(description: "rank \(rank) of \(size): \(requests[0].what) waited \(Int(timeout)) s for the other ranks "
                                          + "(one died or hangs; RETORT_COLLECTIVE_TIMEOUT sets the wait): ending the job")
                }
            }
        }
    }

    /// Tests each request once (which also moves the others along), dropping those done.
    public func poll(_ requests: inout [Request]) throws {
        var error = [CChar](repeating: 0, count: 512)
        var remaining: [Request] = []
        for var r in requests {
            var done: Int32 = 0
            try check(rt_mpi_test(&r.handle, &done, &error, error.count), error, r.what)
            if done == 0 { remaining.append(r) }
        }
        requests = remaining
    }

    /// The element-wise reduction of `values` over every rank, in place (small host arrays:
    /// losses, counts, flags).
    public func allReduce(_ values: inout [Double], _ op: Reduction = .sum, what: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        var requests = [Request(handle: nil, what: what)]
        try values.withUnsafeMutableBufferPointer { buffer in
            try check(rt_mpi_iallreduce_f64(buffer.baseAddress, Int32(buffer.count), op.rawValue, &requests[0].handle, &error, error.count),
                      error, what)
            try wait(&requests)
        }
    }

    /// Rank `root`'s bytes in every rank's `bytes` (the same count everywhere).
    public func broadcast(_ bytes: inout [UInt8], root: Int = 0, what: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        var requests = [Request(handle: nil, what: what)]
        try bytes.withUnsafeMutableBytes { buffer in
            try check(rt_mpi_ibcast(buffer.baseAddress, Int32(buffer.count), Int32(root), &requests[0].handle, &error, error.count), error, what)
            try wait(&requests)
        }
    }

    /// Sums `tensors` over every rank, in place, and waits: host memory directly on the CPU, a
    /// copy through the host on a device.
    public func sum(_ tensors: [Tensor], backend: Backend, what: String) throws {
        if backend.kind == .cpu {
            var requests = try tensors.flatMap { try startSum($0, what: what) }
            try wait(&requests)
            return
        }
        for t in tensors {
            var host = backend.floats(t)
            try host.withUnsafeMutableBufferPointer { buffer in
                var requests = try startSum(buffer.baseAddress!, count: buffer.count, what: what)
                try wait(&requests)
            }
            host.withUnsafeBytes { backend.upload(t, $0) }
        }
    }
}
