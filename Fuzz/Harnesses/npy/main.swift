import Datasets

/// NPY arrays (samples and labels): any bytes give an array or an error, never a trap; and, as
/// samples, with the levels a run may give them (uint8, other integers with their levels, floats).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    if let array = try? NPYArray(parsing: bytes, path: "fuzz.npy") {
        _ = array.shape
    }
    // The levels from the last byte (the first is the magic's): none, 2, 256, 1000 or 65536.
    let levels: Int? = [nil, 2, 256, 1000, 65536][Int(bytes.last ?? 0) % 5]
    if let set = try? ImageSet(parsingArray: bytes, path: "fuzz.npy", format: .npy, levels: levels), set.count > 0 {
        _ = set.batch([0])
        _ = set.batch([set.count - 1], as: .levels)
        _ = set.description
        try? set.validateFinite()
    }
    return 0
}
