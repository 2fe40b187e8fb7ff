// How the CUDA backend queues a kernel: its arguments checked against the kernel's signature
// (CUDAKernelTable.swift), grid shapes for the common cases, and the start-up check a new
// backend runs before it is used.
import CBackend
import Foundation
import Kernels

extension CUDABackend {
    // MARK: launching

    typealias K = CUDAKernelTable

    enum KernelArg {
        case tensor(Tensor?), int32(Int), int64(Int), float(Float), uint64(UInt64)

        /// Whether this argument can be passed for `parameter` (a nil tensor: any pointer).
        func fits(_ parameter: CUDAKernel.Parameter) -> Bool {
            switch (self, parameter) {
            case (.tensor(nil), let p): return p.isPointer
            case (.tensor(let t?), .floats), (.tensor(let t?), .doubles): return t.dtype == .f32
            case (.tensor(let t?), .ints): return t.dtype == .i32
            case (.tensor(let t?), .halves): return t.dtype == .bf16 || t.dtype == .f16
            case (.int32, .int32), (.int64, .int64), (.float, .float), (.uint64, .uint64): return true
            default: return false
            }
        }
    }

    func ptr(_ t: Tensor) -> rt_CUdeviceptr { rt_CUdeviceptr(t.buffer.address) + rt_CUdeviceptr(t.offset * t.dtype.size) }

    func slot(_ arg: KernelArg) -> UInt64 {
        switch arg {
        case .tensor(let t): return t.map(ptr) ?? 0
        case .int32(let v): return UInt64(UInt32(bitPattern: Int32(v)))
        case .int64(let v): return UInt64(bitPattern: Int64(v))
        case .float(let v): return UInt64(v.bitPattern)
        case .uint64(let v): return v
        }
    }

    /// Grid-stride kernels over `elements` items: 256 threads per block, at most 8192 blocks.
    func launch(_ kernel: CUDAKernel, elements: Int, _ args: KernelArg...) { launch(kernel, elements: elements, args) }

    func launch(_ kernel: CUDAKernel, elements: Int, _ args: [KernelArg]) {
        launch(kernel, grid: max(1, min((elements + 255) / 256, 8192)), block: 256, args)
    }

    /// One warp per row: 8 warps per block.
    func launch(_ kernel: CUDAKernel, warps rows: Int, _ args: KernelArg...) {
        launch(kernel, grid: max(1, (rows + 7) / 8), block: 256, args)
    }

    func launch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: KernelArg...) {
        launch(kernel, grid: grid, gridY: gridY, block: block, blockY: blockY, args)
    }

    /// Queues `kernel` after checking `args` against its signature: a wrong count, order, width
    /// or tensor dtype is a bug in this file, stopped here with the kernel's name.
    func launch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: [KernelArg]) {
        do { try tryLaunch(kernel, grid: grid, gridY: gridY, block: block, blockY: blockY, args) } catch { fatalError("retort: \(error)") }
    }

    /// `launch`, throwing what would stop the program (for the start-up check).
    func tryLaunch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: [KernelArg]) throws {
        precondition(args.count == kernel.parameters.count,
                     "\(kernel): \(args.count) arguments for \(kernel.parameters.count) parameters")
        for (index, (arg, parameter)) in zip(args, kernel.parameters).enumerated() {
            precondition(arg.fits(parameter), "\(kernel): argument \(index) (\(arg)) does not fit parameter \(index) (\(parameter.rawValue))")
        }
        guard grid > 0, gridY > 0 else { return }   // nothing to do (an empty tensor)
        device.makeCurrent()   // before the lookup: loading a module needs the context too
        let fn = try kernels.function(kernel.file, kernel.name)
        var slots = args.map(slot)
        let result = slots.withUnsafeMutableBufferPointer { buffer in
            rt_cuda_launch(fn, UInt32(grid), UInt32(gridY), 1, UInt32(block), UInt32(blockY), 1, 0, device.stream,
                           buffer.baseAddress, Int32(buffer.count))
        }
        func shape() -> String {   // only for a message
            "grid \(grid)" + (gridY > 1 ? "×\(gridY)" : "") + ", block \(block)" + (blockY > 1 ? "×\(blockY)" : "")
        }
        try CUDADevice.check(result, "launching \(kernel) (\(shape()))")
        device.checkpoint("\(kernel) (\(shape()))")
    }

    /// A matmul through the bias epilogue and a kernel, run and read back when the backend is
    /// made: a GPU, driver or library that cannot do Retort's work fails here — where
    /// `--device auto` still falls back to the CPU with the reason — not in the middle of a run.
    func startupCheck() throws {
        let (m, n, k) = (2, 3, 4)
        let a = (0..<(m * k)).map { Float($0 % 5) - 2 }, b = (0..<(n * k)).map { Float($0 % 3) - 1 }, bias: [Float] = [0.5, -1, 2]
        var expected = [Float](repeating: 0, count: m * n)   // (A·Bᵀ + bias) · 2
        for i in 0..<m { for j in 0..<n { expected[i * n + j] = 2 * ((0..<k).reduce(bias[j]) { $0 + a[i * k + $1] * b[j * k + $1] }) } }
        let da = try allocate(a.count, .f32), db = try allocate(b.count, .f32), dBias = try allocate(n, .f32)
        let dc = try allocate(m * n, .f32)
        for (tensor, values) in [(da, a), (db, b), (dBias, bias)] {
            try values.withUnsafeBytes { try CUDADevice.check(device.driver.cuMemcpyHtoD(ptr(tensor), $0.baseAddress, $0.count), "an upload") }
        }
        let g = Gemm(m: m, n: n, k: k, transB: true)
        var (ha, hb) = (da, db)   // at bf16/fp16 rounded to 16 bits (exact: small integers), as runMatmul does
        if let half = precision.halfType {
            let cast = half == .bf16 ? K.castF32ToBf16 : K.castF32ToF16
            (ha, hb) = (try allocate(a.count, half), try allocate(b.count, half))
            for (dst, src) in [(ha, da), (hb, db)] {
                try tryLaunch(cast, grid: 1, block: 256, [.tensor(dst), .tensor(src), .int64(dst.count)])
            }
        }
        if try !gemm.tryRun(c: ptr(dc), a: ptr(ha), b: ptr(hb), bias: ptr(dBias), g) {
            _ = try gemm.tryRun(c: ptr(dc), a: ptr(ha), b: ptr(hb), bias: nil, g)
            try tryLaunch(K.biasAdd, grid: 1, block: 256, [.tensor(dc), .tensor(dBias), .int64(m), .int32(n)])
        }
        try tryLaunch(K.scaleF32, grid: 1, block: 256, [.tensor(dc), .int64(m * n), .float(2)])
        try CUDADevice.check(device.driver.cuStreamSynchronize(device.stream), "running a test matmul and kernel")
        var got = [Float](repeating: .nan, count: m * n)
        try got.withUnsafeMutableBytes { try CUDADevice.check(device.driver.cuMemcpyDtoH($0.baseAddress, ptr(dc), $0.count), "a download") }
        guard got == expected else {
            throw BackendError("a test matmul and kernel computed \(got), expected \(expected): this GPU, driver or library "
                               + "does not compute what Retort needs")
        }
    }
}
