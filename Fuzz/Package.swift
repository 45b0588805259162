// swift-tools-version:6.0
import PackageDescription

// libFuzzer harnesses, one per parser of a file vae-mpi reads, built with
// `swift build --sanitize=fuzzer --sanitize=address` by scripts/fuzz.sh.
// Each exports LLVMFuzzerTestOneInput (libFuzzer supplies main).
let parsers = ["npy", "idx", "csv", "safetensors", "checkpoint", "image", "metrics", "vaez", "sparse", "hdf5"]

let package = Package(
    name: "vae-mpi-fuzz",
    dependencies: [.package(name: "vae-mpi", path: "..")],
    targets: parsers.map { parser in
        .executableTarget(
            name: "fuzz-\(parser)",
            dependencies: [.product(name: "VAEMPIParsers", package: "vae-mpi")],
            path: "Harnesses/\(parser)",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    }
)
