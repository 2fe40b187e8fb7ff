// The processes of one data-parallel job, started and connected by Open MPI's `mpirun`: this
// process's rank, the job's size, its rank on its machine, and the collectives training needs
// (sum of gradients, small host all-reduces, a broadcast). Open MPI is loaded at run time
// (CBackend/mpi.c) and only when mpirun started this process, so a single process never needs it.
//
// Every wait is bounded: a collective that does not complete within `timeout` seconds (a rank
// died or hangs) throws CollectiveTimeout naming this rank and the operation, and the caller
// ends the job (`abort`). CPU tensors are reduced in place in host memory, in chunks of at most
// 2^30 elements (MPI counts are ints); CUDA tensors through NCCL (NCCL.swift) when it loads,
// else through host memory.
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
    /// MPI allows a second thread to make calls (never two at once) on every rank: gradient sums
    /// can run on their own thread while the backward goes on (MPI_THREAD_SERIALIZED).
    public private(set) var serialized: Bool

    /// The job this process belongs to (set by `join`); nil for a process on its own.
    public private(set) nonisolated(unsafe) static var world: ProcessGroup?

    /// Rank 0: the one that evaluates, logs, prints and writes files.
    public var isPrimary: Bool { rank == 0 }

    /// Whether this process evaluates, logs, prints and writes: rank 0 of its job, or a process
    /// on its own.
    public static var isPrimaryProcess: Bool { world?.isPrimary ?? true }

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
        guard let sizeText = env["OMPI_COMM_WORLD_SIZE"], let expected = Int(sizeText), expected > 1 else {
            // Another launcher (MPICH's or Intel's mpiexec, srun with PMI) would start N runs that
            // each train alone into the same folder: refuse.
            for name in ["PMI_SIZE", "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS"] where env["OMPI_COMM_WORLD_SIZE"] == nil && (env[name].flatMap(Int.init) ?? 1) > 1 {
                throw CollectiveError(description: "this process was started by a launcher other than Open MPI's mpirun (\(name)=\(env[name]!)): "
                                      + "it would be one of several separate runs writing one folder; "
                                      + "Retort's data parallelism speaks Open MPI only; start it with Open MPI's mpirun, or --nproc")
            }
            return nil
        }
        var rank: Int32 = 0, size: Int32 = 0, serialized: Int32 = 0
        var error = [CChar](repeating: 0, count: 512)
        if rt_mpi_init(&rank, &size, &serialized, &error, error.count) != 0 {
            throw CollectiveError(description: "could not join the MPI job: " + Self.text(error))
        }
        let info = rt_mpi_load().pointee
        let timeout = env["RETORT_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? 900
        let group = ProcessGroup(rank: Int(rank), size: Int(size),
                                 localRank: env["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0,
                                 localSize: env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1,
                                 timeout: timeout > 0 ? timeout : 900, serialized: serialized != 0,
                                 library: withUnsafeBytes(of: info.version) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        // Every rank must sum alike: a thread only where all ranks' MPI allow one.
        var everywhere = [group.serialized ? 1.0 : 0.0]
        try group.allReduce(&everywhere, .min, what: "the MPI thread check")
        group.serialized = everywhere[0] == 1
        world = group
        return group
    }

    init(rank: Int, size: Int, localRank: Int, localSize: Int, timeout: Double, serialized: Bool, library: String) {
        self.rank = rank; self.size = size; self.localRank = localRank; self.localSize = localSize
        self.timeout = timeout; self.serialized = serialized; self.library = library
    }

    /// MPI_Finalize (every rank, at a normal exit).
    public static func leave() {
        guard world != nil else { return }
        rt_mpi_finalize()
    }

    /// Ends every process of the job (MPI_Abort) with `code`. Should MPI_Abort not return nor
    /// end the process within 10 s (another thread is inside a blocking collective), the process
    /// ends itself, and mpirun ends the rest of the job.
    public func abort(_ code: Int32) -> Never {
        fflush(nil)
        Thread.detachNewThread { sleep(10); _exit(code) }
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

    /// Sums a CPU tensor over every rank in place, blocking (Open MPI's tuned MPI_Allreduce,
    /// about 2.6× its non-blocking one on shared memory): for the gradient thread, whose waits
    /// the training thread bounds.
    public func sumNow(_ t: Tensor, what: String) throws {
        precondition(t.dtype == .f32, "ProcessGroup sums f32 tensors")
        let base = UnsafeMutablePointer<Float>(bitPattern: t.buffer.address)! + t.offset
        var error = [CChar](repeating: 0, count: 512)
        for start in stride(from: 0, to: t.count, by: Self.chunk) {
            try check(rt_mpi_allreduce_f32(base + start, Int32(min(Self.chunk, t.count - start)), &error, error.count), error, what)
        }
    }

    /// The error of a wait that ran out of time.
    public func timedOut(_ what: String, after seconds: Double? = nil) -> CollectiveError {
        CollectiveError(description: "rank \(rank) of \(size): \(what) waited \(Int(seconds ?? timeout)) s for the other ranks: "
                        + "a rank that does not report this died or hangs (RETORT_COLLECTIVE_TIMEOUT sets the wait); ending the job")
    }

    /// Completes `requests` and sets them to done; throws CollectiveError after `timeout`.
    /// Open MPI moves a non-blocking collective along only inside MPI calls, so the first second
    /// polls without pause; a longer wait (rank 0 evaluating, a slow rank) sleeps between polls.
    public func wait(_ requests: inout [Request], timeout: Double? = nil) throws {
        let start = Date(), deadline = start.addingTimeInterval(timeout ?? self.timeout)
        var polls = 0
        while !requests.isEmpty {
            try poll(&requests)
            if requests.isEmpty { return }
            polls += 1
            guard polls % 256 == 0 else { continue }
            let now = Date()
            if now > deadline { throw timedOut(requests[0].what, after: timeout) }
            if now.timeIntervalSince(start) > 1 { usleep(200) }
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
    public func allReduce(_ values: inout [Double], _ op: Reduction = .sum, what: String, timeout: Double? = nil) throws {
        var error = [CChar](repeating: 0, count: 512)
        var requests = [Request(handle: nil, what: what)]
        try values.withUnsafeMutableBufferPointer { buffer in
            try check(rt_mpi_iallreduce_f64(buffer.baseAddress, Int32(buffer.count), op.rawValue, &requests[0].handle, &error, error.count),
                      error, what)
            try wait(&requests, timeout: timeout)
        }
    }

    /// Rank `root`'s values in every rank's `values` (the same count everywhere).
    public func broadcastValue(_ values: inout [Double], root: Int = 0, what: String) throws {
        var bytes = values.withUnsafeBytes { Array($0) }
        try broadcast(&bytes, root: root, what: what)
        values = bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
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

    /// How a device's tensors are summed, once the first sum chose: NCCL's description, or why
    /// they go through host memory.
    public private(set) var deviceTransport: String?
    private var nccl: NCCLCommunicator?

    /// Every rank decides at the same sum (NCCL's set-up is collective).
    private func chooseDeviceTransport(_ backend: Backend) throws {
        guard deviceTransport == nil else { return }
        let (communicator, reason) = try NCCLCommunicator.make(backend, group: self)
        nccl = communicator
        deviceTransport = communicator.map { "by " + $0.description } ?? "through host memory (no NCCL: \(reason ?? "?"))"
    }

    /// On a device whose sums go through NCCL: starts summing `tensors` over every rank, in place,
    /// after the work queued so far on the device, and returns true without waiting (the next
    /// `sum` waits for it). False where the sums go through host memory: nothing started.
    public func startDeviceSum(_ tensors: [Tensor], backend: Backend) throws -> Bool {
        precondition(backend.kind != .cpu, "startDeviceSum: a device's tensors")
        try chooseDeviceTransport(backend)
        guard let nccl else { return false }
        try nccl.start(tensors)
        return true
    }

    /// Sums `tensors` over every rank, in place, and waits (for sums startDeviceSum began, too):
    /// host memory directly on the CPU; on CUDA through NCCL when it loads, else a copy through
    /// the host.
    public func sum(_ tensors: [Tensor], backend: Backend, what: String) throws {
        if backend.kind == .cpu {
            var requests = try tensors.flatMap { try startSum($0, what: what) }
            try wait(&requests)
            return
        }
        try chooseDeviceTransport(backend)
        if let nccl { return try nccl.sum(tensors) }
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
