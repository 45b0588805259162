import Datasets

/// IDX arrays (MNIST's format).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    _ = try? IDXArray(parsing: bytes, path: "fuzz.idx")
    return 0
}
