// swift-tools-version:6.0
// Retort: fine-tune and distil transformer text classifiers on a backend of its own.
// Layout and rules: ../shared/DESIGN.md and docs/BACKEND.md. Library targets (CBackend, Kernels,
// Backend, Models, Train) depend on no Swift package; only the `retort` executable and the Export
// (swift-protobuf) and Serve (Hummingbird) targets beside them may.
import PackageDescription

// The C kernels are always optimised, even in debug builds, so `swift test` runs them at speed.
// Hot loops carry their own target_clones (AVX-512 / AVX2 / baseline), so one build runs on any x86-64.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-mprefer-vector-width=512", "-Wall", "-Wno-unused-function", "-Wno-psabi"])]

let package = Package(
    name: "Retort",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "retort", targets: ["retort"]),
        .executable(name: "backend-check", targets: ["backend-check"]),
        .library(name: "Backend", targets: ["Backend"]),
        // Test support: the emulated CUDA device (driver, NVRTC, cuBLASLt on the CPU), loaded in
        // place of libcuda.so.1, libnvrtc and libcublasLt by the emulated-CUDA tests.
        .library(name: "RetortEmulatedCUDA", type: .dynamic, targets: ["CUDAEmulation"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
    ],
    targets: [
        // Run-time loaders: OpenBLAS, libcuda, NVRTC, cuBLASLt (own declarations, dlopen only).
        .target(name: "CBackend", cSettings: kernelFlags, linkerSettings: [.linkedLibrary("dl")]),
        // Hand-written kernels: cpu/*.c compiled here, cuda/*.cu embedded as strings for NVRTC.
        .target(name: "Kernels", exclude: ["cuda"], cSettings: kernelFlags,
                linkerSettings: [.linkedLibrary("pthread"), .linkedLibrary("m")]),
        .target(name: "Backend", dependencies: ["CBackend", "Kernels"]),
        .target(name: "Models", dependencies: ["Backend"]),
        .target(name: "Train", dependencies: ["Models", "Backend"]),
        // ONNX export: the graph of a classifier, written with swift-protobuf (Generated/onnx.pb.swift
        // is committed; scripts/generate-onnx-proto remakes it, so builds never run protoc).
        .target(name: "Export", dependencies: ["Models", "Backend", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // retort serve: one classifier behind HTTP (Hummingbird), requests coalesced into batches.
        .target(name: "Serve", dependencies: ["Train", "Models", "Backend", .product(name: "Hummingbird", package: "hummingbird")]),
        // `retort backend-check` and `retort perf` run Conformance and PerfSuite: one static binary
        // is what scripts/gpu-check carries to a GPU machine.
        .executableTarget(name: "retort", dependencies: [
            "Backend", "Models", "Train", "Export", "Serve", "Conformance", "PerfSuite",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The perf suite (a library, so retort can carry it) and its own executable.
        .target(name: "PerfSuite", dependencies: ["Backend", "Models", "Train"], path: "Perf/Sources"),
        .executableTarget(name: "Perf", dependencies: ["PerfSuite"], path: "Perf/Main"),
        // Every op and model on a device against the CPU backend: a library (used by the tests)
        // and the executable scripts/gpu-check carries to a GPU machine.
        .target(name: "Conformance", dependencies: ["Backend", "Models", "Train"]),
        .executableTarget(name: "backend-check", dependencies: ["Backend", "Conformance"]),
        // The emulated CUDA device (test support; C++20): every .cu compiled for the CPU, the
        // driver API, NVRTC and cuBLASLt over it. Never linked into retort.
        .target(name: "CUDAEmulation", path: "Tests/CUDAEmulation",
                cSettings: [.unsafeFlags(["-O3", "-Wall"])],
                cxxSettings: [.unsafeFlags(["-O3", "-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-fno-exceptions"])]),
        // CUDA kernel sources run on the CPU under a warp emulator (test support; C++20, fibers).
        .target(name: "WarpEmulation", path: "Tests/WarpEmulation",
                cxxSettings: [.unsafeFlags(["-O2", "-Wall", "-Wno-unused-function"])]),
        .testTarget(name: "BackendTests", dependencies: ["Backend", "Kernels", "CBackend", "Conformance", "Models", "WarpEmulation"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Train"]),
        .testTarget(name: "TrainTests", dependencies: ["Train"]),
        // The executables end to end, in separate processes (they are built for these tests).
        .testTarget(name: "CLITests", dependencies: ["retort", "backend-check", "Perf", "Backend", "Models"]),
    ],
    cLanguageStandard: .c2x,
    cxxLanguageStandard: .cxx20
)
