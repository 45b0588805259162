import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a whole file, transparently decompressing gzip (zlib's `gzread`
/// passes plain files through unchanged). A truncated or corrupt gzip stream
/// is an error naming the file.
public func readPossiblyCompressedFile(_ path: String) throws -> [UInt8] {
    guard access(path, F_OK) == 0 else { throw DatasetError.notFound(path: path, hint: "") }
    guard let file = gzopen(path, "rb") else {
        throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }
    defer { gzclose(file) }
    gzbuffer(file, 1 << 17)
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
        if n < 0 {
            var code: Int32 = 0
            let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
            throw DatasetError.unreadable(path: path, reason: message)
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<Int(n)])
    }
    // gzread stops quietly at a premature end of a gzip member; gzerror tells.
    var code: Int32 = 0
    let message = gzerror(file, &code)
    if code != Z_OK && code != Z_STREAM_END {
        throw DatasetError.unreadable(
            path: path, reason: "corrupt or truncated gzip data (\(message.map { String(cString: $0) } ?? "zlib error \(code)"))")
    }
    return bytes
}

/// True when a file exists at `path`.
public func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}
