// Every matmul on the GPU goes through cuBLASLt. Our Gemm is row-major; cuBLASLt is
// column-major, so C[m,n] = op(A)·op(B) is computed as Cᵀ[n,m] = op(B)ᵀ·op(A)ᵀ: the operands
// swap, each keeps its own transpose flag, and the leading dimensions carry over unchanged.
// With bf16/fp16 precision the backend hands in operands already cast to 16 bits (A and B
// layouts 16BF/16F), C and D stay fp32 and accumulation is fp32 (CUBLAS_COMPUTE_32F).
// A plan (descriptors and the heuristic's algorithm) is made once per shape, precision and
// operand alignment, then reused: a training step does no cuBLASLt set-up after the first.
import CBackend
import Foundation

final class CUDAMatmul: @unchecked Sendable {
    private struct Key: Hashable {
        var m, n, k, lda, ldb, ldc, batch, strideA, strideB, strideC: Int
        var transA, transB: Bool
        var alignA, alignB, alignC: Int
        /// The bias pointer's alignment through the BIAS epilogue (0: no epilogue).
        var alignBias: Int
    }

    private final class Plan {
        let api: rt_cublaslt_api
        var desc: rt_cublasLtMatmulDesc?
        var a, b, c: rt_cublasLtMatrixLayout?
        var algo = rt_cublasLtMatmulAlgo()
        var workspace = 0
        init(api: rt_cublaslt_api) { self.api = api }
        deinit {
            if let desc { _ = api.cublasLtMatmulDescDestroy(desc) }
            for layout in [a, b, c] { if let layout { _ = api.cublasLtMatrixLayoutDestroy(layout) } }
        }
    }

    let api: rt_cublaslt_api
    let version: Int
    let precision: Precision
    private let device: CUDADevice
    private let handle: rt_cublasLtHandle
    private let workspace: Tensor
    private var plans: [Key: Plan] = [:]
    /// Problems cuBLASLt would not run with the BIAS epilogue: their bias is added by a kernel.
    private var epilogueRefused: Set<Key> = []
    private let lock = NSLock()
    static let workspaceBytes = 32 << 20

    init(device: CUDADevice, precision: Precision, workspace: Tensor) throws {
        let lt = rt_cublaslt_load()!.pointee
        guard lt.loaded != 0 else { throw BackendError("the CUDA backend needs cuBLASLt: \(string(lt.error))") }
        api = lt.fn
        version = Int(lt.version)
        self.device = device
        self.precision = precision
        self.workspace = workspace
        device.makeCurrent()
        var handle: rt_cublasLtHandle?
        let status = api.cublasLtCreate(&handle)
        guard status == 0, let handle else { throw BackendError("cublasLtCreate failed (cuBLAS status \(status))") }
        self.handle = handle
    }

    deinit {
        plans = [:]
        _ = api.cublasLtDestroy(handle)
    }

    func statusText(_ status: rt_cublasStatus) -> String {
        if let text = api.cublasLtGetStatusString?(status) { return "\(String(cString: text)) (status \(status))" }
        return "cuBLAS status \(status)"
    }

    /// Largest power of two ≤ 256 dividing the byte address (cuBLASLt assumes 256 otherwise).
    private static func alignment(_ address: UInt64) -> Int {
        var a = 256
        while a > 4 && address % UInt64(a) != 0 { a /= 2 }
        return a
    }

    /// C = alpha·op(A)·op(B) + beta·C (+ bias[n] on every row, through the epilogue; batch 1 only).
    /// Returns false, having done nothing, when cuBLASLt will not take this bias through the
    /// epilogue (no algorithm for it, or NOT_SUPPORTED at run time): the caller then runs the
    /// matmul without it and adds the bias with a kernel. Every other failure is a device fault
    /// or a bug and stops the program.
    @discardableResult
    func run(c: UInt64, a: UInt64, b: UInt64, bias: UInt64?, _ g: Gemm) -> Bool {
        do { return try tryRun(c: c, a: a, b: b, bias: bias, g) } catch { fatalError("retort: cuBLASLt: \(error)") }
    }

    /// `run`, throwing what would stop the program (for the start-up check).
    func tryRun(c: UInt64, a: UInt64, b: UInt64, bias: UInt64?, _ g: Gemm) throws -> Bool {
        precondition(bias == nil || g.batch == 1, "the bias epilogue is for single matmuls")
        guard g.m > 0 && g.n > 0 && g.k > 0 && g.batch > 0 else { return true }
        // The plan depends on every alignment cuBLASLt's choice relies on, the bias's included:
        // the heuristic sees the real bias pointer (a null one would promise 256 bytes).
        let key = Key(m: g.m, n: g.n, k: g.k, lda: g.lda, ldb: g.ldb, ldc: g.ldc, batch: g.batch,
                      strideA: g.strideA, strideB: g.strideB, strideC: g.strideC, transA: g.transA, transB: g.transB,
                      alignA: Self.alignment(a), alignB: Self.alignment(b), alignC: Self.alignment(c),
                      alignBias: bias.map(Self.alignment) ?? 0)
        lock.lock()
        defer { lock.unlock() }
        if epilogueRefused.contains(key) { return false }
        let plan: Plan
        if let cached = plans[key] {
            plan = cached
        } else {
            do {
                plan = try makePlan(key, bias: bias)
            } catch {
                guard bias == nil else { epilogueRefused.insert(key); return false }
                throw error
            }
            plans[key] = plan
        }
        if var biasPointer = bias {
            try checkLt(api.cublasLtMatmulDescSetAttribute(plan.desc, Int32(RT_CUBLASLT_MATMUL_DESC_BIAS_POINTER), &biasPointer,
                                                           MemoryLayout<UInt64>.size), "bias pointer")
        }
        var alpha = g.alpha, beta = g.beta, algo = plan.algo
        let ws = UnsafeMutableRawPointer(bitPattern: UInt(workspace.buffer.address))
        // Column-major: A' = our B, B' = our A, D = C (in place).
        let status = api.cublasLtMatmul(handle, plan.desc, &alpha, UnsafeRawPointer(bitPattern: UInt(b)), plan.a,
                                        UnsafeRawPointer(bitPattern: UInt(a)), plan.b, &beta,
                                        UnsafeRawPointer(bitPattern: UInt(c)), plan.c,
                                        UnsafeMutableRawPointer(bitPattern: UInt(c)), plan.c, &algo, ws,
                                        min(plan.workspace, Self.workspaceBytes), device.stream)
        if status == Self.notSupported && bias != nil {
            epilogueRefused.insert(key)
            return false
        }
        try checkLt(status, "cublasLtMatmul m \(g.m) n \(g.n) k \(g.k) batch \(g.batch)")
        return true
    }

    static let notSupported: rt_cublasStatus = 15   // CUBLAS_STATUS_NOT_SUPPORTED

    private func checkLt(_ status: rt_cublasStatus, _ what: String) throws {
        if status != 0 { throw BackendError("\(what): \(statusText(status))") }
    }

    private func makePlan(_ key: Key, bias: UInt64?) throws -> Plan {
        let plan = Plan(api: api)
        func check(_ status: rt_cublasStatus, _ what: String) throws {
            if status != 0 { throw BackendError("\(what): \(statusText(status))") }
        }
        let compute = precision == .tf32 ? RT_CUBLAS_COMPUTE_32F_FAST_TF32 : RT_CUBLAS_COMPUTE_32F
        try check(api.cublasLtMatmulDescCreate(&plan.desc, Int32(compute), Int32(RT_CUDA_R_32F)), "matmul descriptor")
        var opA = Int32(key.transB ? RT_CUBLAS_OP_T : RT_CUBLAS_OP_N)   // A' is our B
        var opB = Int32(key.transA ? RT_CUBLAS_OP_T : RT_CUBLAS_OP_N)   // B' is our A
        try check(api.cublasLtMatmulDescSetAttribute(plan.desc, Int32(RT_CUBLASLT_MATMUL_DESC_TRANSA), &opA, 4), "transa")
        try check(api.cublasLtMatmulDescSetAttribute(plan.desc, Int32(RT_CUBLASLT_MATMUL_DESC_TRANSB), &opB, 4), "transb")
        if var biasPointer = bias {
            var epilogue = UInt32(RT_CUBLASLT_EPILOGUE_BIAS)
            try check(api.cublasLtMatmulDescSetAttribute(plan.desc, Int32(RT_CUBLASLT_MATMUL_DESC_EPILOGUE), &epilogue, 4), "epilogue")
            try check(api.cublasLtMatmulDescSetAttribute(plan.desc, Int32(RT_CUBLASLT_MATMUL_DESC_BIAS_POINTER), &biasPointer,
                                                         MemoryLayout<UInt64>.size), "bias pointer")
        }
        // Stored matrices, column-major (rows, cols, ld): our row-major [r, c] with ld is [c, r].
        let aRows = key.transB ? key.k : key.n, aCols = key.transB ? key.n : key.k
        let bRows = key.transA ? key.m : key.k, bCols = key.transA ? key.k : key.m
        // bf16/fp16: the operands were cast to 16 bits by the backend; C stays fp32, accumulation fp32.
        let operand = Int32(precision == .bf16 ? RT_CUDA_R_16BF : precision == .fp16 ? RT_CUDA_R_16F : RT_CUDA_R_32F)
        try check(api.cublasLtMatrixLayoutCreate(&plan.a, operand, UInt64(aRows), UInt64(aCols), Int64(key.ldb)), "layout A")
        try check(api.cublasLtMatrixLayoutCreate(&plan.b, operand, UInt64(bRows), UInt64(bCols), Int64(key.lda)), "layout B")
        try check(api.cublasLtMatrixLayoutCreate(&plan.c, Int32(RT_CUDA_R_32F), UInt64(key.n), UInt64(key.m), Int64(key.ldc)), "layout C")
        if key.batch > 1 {
            for (layout, stride) in [(plan.a, key.strideB), (plan.b, key.strideA), (plan.c, key.strideC)] {
                var count = Int32(key.batch), offset = Int64(stride)
                try check(api.cublasLtMatrixLayoutSetAttribute(layout, Int32(RT_CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT), &count, 4), "batch count")
                try check(api.cublasLtMatrixLayoutSetAttribute(layout, Int32(RT_CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET), &offset, 8),
                          "batch stride")
            }
        }
        var preference: rt_cublasLtMatmulPreference?
        try check(api.cublasLtMatmulPreferenceCreate(&preference), "preference")
        defer { _ = api.cublasLtMatmulPreferenceDestroy(preference) }
        var workspaceBytes = UInt64(Self.workspaceBytes)
        try check(api.cublasLtMatmulPreferenceSetAttribute(preference, Int32(RT_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES),
                                                           &workspaceBytes, 8), "workspace preference")
        for (attribute, value) in [(RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.alignB),
                                   (RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.alignA),
                                   (RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.alignC),
                                   (RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.alignC)] {
            var bytes = UInt32(value)
            try check(api.cublasLtMatmulPreferenceSetAttribute(preference, Int32(attribute), &bytes, 4), "alignment preference")
        }
        var result = rt_cublasLtMatmulHeuristicResult()
        var returned: Int32 = 0
        try check(api.cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, preference, 1,
                                                     &result, &returned), "algorithm heuristic")
        guard returned > 0 else {
            throw BackendError("no cuBLASLt algorithm for m \(key.m) n \(key.n) k \(key.k) batch \(key.batch)")
        }
        plan.algo = result.algo
        plan.workspace = result.workspaceSize
        return plan
    }
}
