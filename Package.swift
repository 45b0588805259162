// swift-tools-version:6.0
import PackageDescription

// Targets form a DAG (see README, "Architecture"): TensorCore and Training
// never import MPI; MPICollectives is the only Swift code that imports CMPI.

// The elementwise kernels are written for the auto-vectorizer; on x86-64 let it
// use AVX2 and FMA (Haswell, 2013: every x86 server CPU since). The manifest is
// compiled for the build host, so this follows the machine that builds.
#if arch(x86_64)
let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell", "-Xcc", "-fno-math-errno"])]
// The C kernels: the same baseline; wider paths are chosen at run time. No
// fused multiply-add contraction, so every path gives the same bits.
let cKernelFlags = ["-O3", "-march=haswell", "-ffp-contract=off", "-fno-math-errno"]
#else
let kernelSettings: [SwiftSetting] = []
let cKernelFlags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
#endif


let package = Package(
    name: "vae-mpi",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vae-mpi", targets: ["vae-mpi"]),
        // For the fuzz harnesses (Fuzz/, scripts/fuzz.sh): the parsers of every file vae-mpi reads.
        .library(name: "VAEMPIParsers", targets: ["Datasets", "Imaging", "Artifacts", "Training", "Compression"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        // Image decoding in C: libpng's full API needs setjmp, which Swift cannot call.
        .target(name: "CImageCodecs", dependencies: ["CPNG", "CTurboJPEG"],
                cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("turbojpeg")]),

        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // HDF5 input: libhdf5 through a small C layer (its type ids are C macros Swift cannot import).
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .target(name: "CHDF5Reader", dependencies: ["CHDF5"], cSettings: [.unsafeFlags(["-O2"])]),

        // Kernels that choose their instruction set at run time (AVX-512, AVX512_BF16),
        // and the CPU feature checks; no fused multiply-add, so every path gives the same bits.
        .target(name: "CKernels", cSettings: [.unsafeFlags(cKernelFlags)]),

        // Signal handling for graceful stops (async-signal-safe C).
        .target(name: "CSystem"),

        // Header-only: FTZ/DAZ control (float_control.h), allocator tuning (malloc_control.h).
        .systemLibrary(name: "CFloatControl"),
        .systemLibrary(name: "CMalloc"),

        .target(name: "TensorCore", dependencies: ["CBLAS", "CDNNL", "CKernels", "CFloatControl"],
                swiftSettings: kernelSettings),
        .target(name: "VAEModel", dependencies: ["TensorCore"], swiftSettings: kernelSettings),
        .target(name: "Imaging", dependencies: ["CPNG", "CImageCodecs"]),
        .target(name: "Datasets", dependencies: ["TensorCore", "Imaging", "CZlib", "CHDF5Reader"]),
        .target(name: "Collectives"),
        .target(name: "MPICollectives", dependencies: ["Collectives", "CMPI"]),
        .target(name: "Artifacts", dependencies: ["TensorCore", "Imaging", "CZlib"]),
        // Lossless compression (bits-back ANS): its own fixed-order kernels and math, so that decoding does not
        // depend on the CPU or the build (no -target-cpu here: nothing in it may depend on the instruction set).
        .target(name: "Compression", dependencies: ["TensorCore", "VAEModel", "CZlib"]),
        .target(name: "Training",
                dependencies: ["TensorCore", "VAEModel", "Datasets", "Collectives", "Artifacts", "Imaging", "Compression"]),
        .executableTarget(
            name: "vae-mpi",
            dependencies: [
                "Training", "MPICollectives", "CMalloc", "CSystem", "TensorCore", "VAEModel", "Datasets", "Artifacts", "Imaging",
                "Compression",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Helpers shared by the test targets (finite-difference checks, temporary directories).
        .target(name: "TestSupport", dependencies: ["TensorCore"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TestSupport"]),
        .testTarget(name: "VAEModelTests", dependencies: ["VAEModel", "TensorCore", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression", "VAEModel", "TensorCore", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Imaging", "TensorCore", "CZlib", "TestSupport"]),
        .testTarget(name: "ArtifactsTests", dependencies: ["Artifacts", "Imaging", "TestSupport"]),
        .testTarget(name: "TrainingTests",
                    dependencies: ["Training", "Collectives", "Datasets", "Artifacts", "Imaging", "VAEModel", "TensorCore", "TestSupport"],
                    resources: [.copy("Fixtures")]),
    ]
)
