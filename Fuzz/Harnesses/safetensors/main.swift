import Artifacts

/// safetensors files (checkpoint tensors).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    _ = try? SafetensorsFile(parsing: bytes, path: "fuzz.safetensors")
    return 0
}
