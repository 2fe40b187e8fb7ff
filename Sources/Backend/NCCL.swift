// The gradient sum of data-parallel ranks on CUDA, through NCCL when it can be loaded: one
// communicator per job (rank 0's unique id broadcast over MPI) with a stream of its own. A sum
// is started after the work queued so far on the backend's stream (an event recorded there, which
// the communicator's stream waits for: a layer's gradients, while the backward goes on with the
// layers below), its all-reduces in one NCCL group; a bounded wait then polls the communicator's
// stream with cuStreamQuery (past the job's timeout the communicator is aborted and the rank says
// so). Without NCCL, or with RETORT_NCCL=0, ProcessGroup sums through host memory instead.
import CBackend
import Foundation

final class NCCLCommunicator {
    let comm: UnsafeMutableRawPointer
    let device: CUDADevice
    let group: ProcessGroup
    /// The all-reduces' stream, and the event that orders each sum after the backend's stream.
    let stream: rt_CUstream
    let queued: rt_CUevent
    /// "NCCL 2.27.3 (path)"
    let description: String

    /// The job's communicator on `backend`'s GPU, or nil (not CUDA, NCCL not found, or
    /// RETORT_NCCL=0) with the reason.
    static func make(_ backend: Backend, group: ProcessGroup) throws -> (NCCLCommunicator?, reason: String?) {
        let info = rt_nccl_load().pointee
        let cuda = backend as? CUDABackend
        var reason: String?
        if cuda == nil { reason = "not a CUDA backend" }
        else if ProcessInfo.processInfo.environment["RETORT_NCCL"] == "0" { reason = "RETORT_NCCL=0" }
        else if info.loaded == 0 { reason = string(info.error) }
        else if group.localSize > Devices.gpus.count && ProcessInfo.processInfo.environment["RETORT_NCCL"] != "1" {
            // (With CUDA_VISIBLE_DEVICES set per rank each sees one GPU: RETORT_NCCL=1 says they differ.)
            reason = "\(group.localSize) ranks share \(Devices.gpus.count) GPU(s) on this machine; NCCL needs one GPU per rank"
        }
        // Every rank takes the same path: NCCL only where all of them have it.
        var everywhere = [reason == nil ? 1.0 : 0.0]
        try group.allReduce(&everywhere, .min, what: "the NCCL check")
        guard let cuda, everywhere[0] == 1 else { return (nil, reason ?? "another rank has no NCCL") }
        var id = [UInt8](repeating: 0, count: Int(RT_NCCL_UNIQUE_ID_BYTES))
        if group.isPrimary { try check(rt_nccl_unique_id(&id), "ncclGetUniqueId", rank: group.rank) }
        try group.broadcast(&id, what: "the NCCL id")
        var comm: UnsafeMutableRawPointer?
        try check(rt_nccl_comm_init_rank(&comm, Int32(group.size), id, Int32(group.rank)), "ncclCommInitRank", rank: group.rank)
        let v = Int(info.version), version = v >= 10000 ? "\(v / 10000).\(v / 100 % 100).\(v % 100)" : "\(v / 1000).\(v / 100 % 10).\(v % 100)"
        return (try NCCLCommunicator(comm: comm!, device: cuda.device, group: group, description: "NCCL \(version) (\(string(info.path)))"), nil)
    }

    /// Takes `comm` over: destroyed here if its stream or event cannot be made.
    private init(comm: UnsafeMutableRawPointer, device: CUDADevice, group: ProcessGroup, description: String) throws {
        self.comm = comm; self.device = device; self.group = group; self.description = description
        var stream: rt_CUstream?, event: rt_CUevent?
        do {
            try CUDADevice.check(device.driver.cuStreamCreate(&stream, UInt32(RT_CU_STREAM_NON_BLOCKING)), "cuStreamCreate")
            try CUDADevice.check(device.driver.cuEventCreate(&event, UInt32(RT_CU_EVENT_DISABLE_TIMING)), "cuEventCreate")
        } catch {
            if let stream { _ = device.driver.cuStreamDestroy(stream) }
            _ = rt_nccl_comm_destroy(comm)
            throw error
        }
        (self.stream, queued) = (stream!, event!)
    }

    deinit {
        _ = device.driver.cuStreamSynchronize(stream)
        _ = rt_nccl_comm_destroy(comm)
        _ = device.driver.cuEventDestroy(queued)
        _ = device.driver.cuStreamDestroy(stream)
    }

    static func check(_ result: Int32, _ what: String, rank: Int) throws {
        guard result == 0 else {
            throw ProcessGroup.CollectiveError(description: "rank \(rank): \(what) failed: \(String(cString: rt_nccl_error_string(result)))")
        }
    }

    /// Sums `tensors` (f32, on this GPU) over the ranks in place and waits for every sum started.
    func sum(_ tensors: [Tensor]) throws {
        try start(tensors)
        try wait()
    }

    /// Starts summing `tensors` in place once the work queued so far on the backend's stream is
    /// done, without waiting.
    func start(_ tensors: [Tensor]) throws {
        try CUDADevice.check(device.driver.cuEventRecord(queued, device.stream), "cuEventRecord")
        try CUDADevice.check(device.driver.cuStreamWaitEvent(stream, queued, 0), "cuStreamWaitEvent")
        try Self.check(rt_nccl_group_start(), "ncclGroupStart", rank: group.rank)
        for t in tensors where t.count > 0 {
            precondition(t.dtype == .f32, "NCCL sums f32 tensors")
            let address = rt_CUdeviceptr(t.buffer.address) + rt_CUdeviceptr(t.offset * 4)
            try Self.check(rt_nccl_all_reduce_sum_f32(address, t.count, comm, stream), "ncclAllReduce", rank: group.rank)
        }
        try Self.check(rt_nccl_group_end(), "ncclGroupEnd", rank: group.rank)
    }

    /// Waits for every sum started, bounded by the job's timeout. The backend's stream goes on
    /// afterwards: what the host queues next (the optimizer) runs after the sums.
    func wait() throws {
        let deadline = Date().addingTimeInterval(group.timeout)
        while true {
            let status = device.driver.cuStreamQuery(stream)
            if status == 0 { return }
            guard status == Int32(RT_CUDA_ERROR_NOT_READY) else {   // still running
                throw ProcessGroup.CollectiveError(description: "rank \(group.rank): the NCCL all-reduce failed on the GPU (CUDA error \(status))")
            }
            if Date() > deadline {
                _ = rt_nccl_comm_abort(comm)
                throw group.timedOut("the NCCL gradient all-reduce")
            }
            usleep(50)
        }
    }
}
