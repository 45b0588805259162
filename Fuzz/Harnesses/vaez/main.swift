import Compression

/// .vaez files: any bytes give a parsed file or an error naming the part, never a trap; a parsed
/// file's chunks then decode as ANS messages (or fail with an error).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    guard let file = try? CompressedFile(parsing: bytes, path: "fuzz.vaez") else { return 0 }
    for chunk in file.chunks {
        guard var message = try? ANSMessage(words: chunk.words) else { continue }
        let distribution = QuantizedDistribution(cdf: [0, 0.25, 0.5, 1], precision: 12)
        for _ in 0..<64 { if (try? message.pop(distribution)) == nil { break } }
    }
    _ = file.bytes
    return 0
}
