import Collectives
@testable import Training

/// A whole checkpoint: the input is a 4-byte little-endian length L, L bytes
/// of sidecar JSON, then the safetensors bytes. Everything a resume or
/// `inspect` checks before using it: the sidecar's checksum, format and
/// configuration (validated like command-line options), the tensors, their
/// checksums, and that they fit the architecture the sidecar describes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    guard bytes.count >= 4 else { return 0 }
    let length = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
    guard length <= bytes.count - 4 else { return 0 }
    let sidecar = Array(bytes[4 ..< 4 + length]), tensors = Array(bytes[(4 + length)...])
    if let checkpoint = try? Checkpoint(tensorsPath: "step-00000001.safetensors", tensorBytes: tensors,
                                        sidecarPath: "step-00000001.json", sidecarBytes: sidecar) {
        _ = CheckpointReport(checkpoint).lines
        _ = try? checkpoint.loadedModel()
    }
    return 0
}
