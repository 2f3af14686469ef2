// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "CellAudit",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cellaudit", targets: ["CellAuditCLI"]),
        .library(name: "OpenCLKit", targets: ["OpenCLKit"]),
        .library(name: "CellAuditCore", targets: ["CellAuditCore"]),
        .library(name: "CellAuditOpenCL", targets: ["CellAuditOpenCL"]),
        .library(name: "CellAuditAnalysis", targets: ["CellAuditAnalysis"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // ONNX models are protobuf messages; the Swift code is generated from onnx.proto once
        // (Tools/generate_onnx_swift.sh) and committed.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // The OpenCL C API, found through pkg-config (ocl-icd-opencl-dev + opencl-headers on Debian).
        .systemLibrary(
            name: "COpenCL",
            pkgConfig: "OpenCL",
            providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]
        ),
        // CBLAS from OpenBLAS (libopenblas-dev on Debian): the CPU backend's matrix products.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // LAPACK's C interface (liblapacke-dev on Debian): the dynamics analysis's eigenvalues and solves.
        .systemLibrary(
            name: "CLAPACKE",
            pkgConfig: "lapacke",
            providers: [.apt(["liblapacke-dev"])]
        ),
        // OpenSSL's libcrypto (libssl-dev on Debian): SHA-256 content hashes of models, banks and
        // shard files (docs/METHOD.md §9).
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // libzip (libzip-dev on Debian): .npz datasets, torch.save and Keras archives, read with its
        // consistency checks (a ZIP library that traps on hostile archives is not used).
        .systemLibrary(
            name: "CLibZip",
            pkgConfig: "libzip",
            providers: [.apt(["libzip-dev"])]
        ),
        // HDF5 (libhdf5-dev on Debian): Keras weight files (.keras archives' model.weights.h5, .h5).
        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]
        ),
        // A typed Swift face on OpenCL. Knows nothing about recurrent networks.
        .target(name: "OpenCLKit", dependencies: ["COpenCL"]),
        // Models, stimuli, metric definitions, the backend protocol and the pure-Swift CPU backend.
        .target(name: "CellAuditCore", dependencies: ["COpenBLAS", "CLibCrypto"]),
        // Every file format a model or dataset comes in, behind one registry that sniffs content:
        // CellAudit model files and plain state dicts (safetensors), ONNX graphs (protobuf code
        // generated once and committed), NumPy .npz datasets.
        .target(name: "CellAuditImport", dependencies: [
            "CellAuditCore", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            "CLibZip", "CHDF5",
        ]),
        // The readers under libFuzzer (Tools/fuzz.sh builds it with -sanitize=fuzzer); a plain
        // build replays a corpus through the same entry point.
        .target(name: "CLibFuzzer"),
        .executableTarget(name: "CellAuditFuzz", dependencies: ["CellAuditCore", "CellAuditImport", "CLibFuzzer"]),
        // Turns Kernels/*.cl into Swift source at build time, so every binary carries its kernels.
        .executableTarget(name: "KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["KernelEmbedder"]),
        .plugin(name: "EmbedDefaultModel", capability: .buildTool(), dependencies: ["KernelEmbedder"]),
        // The OpenCL backend: host side of the kernels in Kernels/.
        .target(
            name: "CellAuditOpenCL",
            dependencies: ["OpenCLKit", "CellAuditCore"],
            plugins: ["EmbedKernels"]
        ),
        // Reductions, tables and reports on top of the backends.
        .target(name: "CellAuditAnalysis", dependencies: ["CellAuditCore", "CellAuditOpenCL", "CLAPACKE", "COpenBLAS"]),
        .executableTarget(
            name: "CellAuditCLI",
            dependencies: [
                "CellAuditCore", "CellAuditOpenCL", "CellAuditAnalysis", "CellAuditImport", "OpenCLKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            plugins: ["EmbedDefaultModel"]
        ),
        .target(name: "TestSupport", dependencies: ["CellAuditCore", "CellAuditOpenCL", "OpenCLKit"], path: "Tests/TestSupport"),
        .testTarget(name: "OpenCLKitTests", dependencies: ["OpenCLKit", "TestSupport"]),
        .testTarget(
            name: "CellAuditCoreTests",
            dependencies: ["CellAuditCore", "CellAuditOpenCL", "CellAuditAnalysis", "CellAuditImport", "TestSupport"]
        ),
        .testTarget(name: "CellAuditCLITests", dependencies: ["CellAuditCLI", "CellAuditCore", "CellAuditImport", "CellAuditOpenCL", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
