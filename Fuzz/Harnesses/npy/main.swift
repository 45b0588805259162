import Datasets

/// NPY arrays (images and labels): any bytes give an array or an error, never a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    if let array = try? NPYArray(parsing: bytes, path: "fuzz.npy") {
        _ = array.shape
    }
    return 0
}
