import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gzipped arrays (`.npy.gz`, gzipped IDX) decompressed once into a cache
/// folder and then mapped like uncompressed ones, so that the ranks of a
/// node share one copy in the page cache instead of each holding the whole
/// decompressed file.
///
/// - Where: `$VAE_MPI_CACHE`, else `$XDG_CACHE_HOME/vae-mpi`, else
///   `~/.cache/vae-mpi`; `VAE_MPI_CACHE=off` (or `VAE_MPI_NO_MMAP=1`) reads
///   gzipped files whole, as before.
/// - Names: `<file name without .gz>.<key>`, the key a hash of the source's
///   absolute path, size and modification time, so a changed source gets a
///   new copy; beside it `<name>.json` records the source, the size and the
///   CRC-32 of the decompressed bytes.
/// - Checked at every use by size and CRC-32 (one pass over the copy, which
///   also brings it into the page cache); a copy that fails is made again.
/// - Made by one process at a time (`flock` on `<name>.lock`; the others
///   wait, then use it), written to a temporary file and renamed into place:
///   a crash or a full disk leaves no partial copy under the name. When the
///   folder cannot be written, the file is read whole instead.
public enum DecompressionCache {
    /// The cache folder, or nil when caching is off.
    public static var directory: String? {
        let environment = ProcessInfo.processInfo.environment
        if environment["VAE_MPI_NO_MMAP"] != nil { return nil }
        if let chosen = environment["VAE_MPI_CACHE"], !chosen.isEmpty {
            return chosen.lowercased() == "off" ? nil : chosen
        }
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/vae-mpi" }
        guard let home = environment["HOME"], !home.isEmpty else { return nil }
        return home + "/.cache/vae-mpi"
    }

    /// What the cache records of a copy.
    struct Record: Codable, Equatable {
        var source: String
        var sourceSize: Int
        var sourceModified: Int64
        var size: Int
        var crc32: UInt32
    }

    /// The path of the checked decompressed copy of gzipped `path`, made
    /// when missing or failing its check; nil when caching is off or the
    /// folder cannot be written. Throws, naming `path`, when the gzip data
    /// is corrupt or truncated.
    public static func decompressed(_ path: String) throws -> String? {
        guard let folder = directory else { return nil }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let absolute = (realpath(path, nil)).map { p in defer { free(p) }; return String(cString: p) } ?? path
        let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        let size = Int(info.st_size)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in Array("\(absolute)\u{0}\(size)\u{0}\(modified)".utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
        }
        var name = (absolute as NSString).lastPathComponent
        if name.lowercased().hasSuffix(".gz") { name.removeLast(3) }
        let copy = folder + "/" + name + "." + String(hash, radix: 16)
        let expected = Record(source: absolute, sourceSize: size, sourceModified: modified, size: 0, crc32: 0)
        if isValid(copy, expected) { return copy }
        guard (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil else {
            return nil
        }
        // One maker at a time; whoever waited checks again.
        let lock = open(copy + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { return nil }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { return nil }
        defer { flock(lock, LOCK_UN) }
        if isValid(copy, expected) { return copy }
        guard let record = try make(copy, from: path, expected) else { return nil }
        return isValid(copy, record) ? copy : nil
    }

    /// Whether `copy` and its record exist, describe `expected`'s source and
    /// hold the recorded size and CRC-32.
    static func isValid(_ copy: String, _ expected: Record) -> Bool {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let data = FileManager.default.contents(atPath: copy + ".json"),
              let record = try? decoder.decode(Record.self, from: data),
              record.source == expected.source, record.sourceSize == expected.sourceSize,
              record.sourceModified == expected.sourceModified,
              let file = MappedFile(copy), file.byteCount == record.size else { return false }
        var crc = crc32(0, nil, 0)
        var offset = 0
        while offset < file.byteCount {
            let n = min(1 << 30, file.byteCount - offset)
            crc = crc32(crc, file.base.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
            offset += n
        }
        return UInt32(crc) == record.crc32
    }

    /// Decompresses `path` into `copy` (through a temporary file) and writes
    /// its record; nil when the folder cannot take it (the file is then read whole).
    static func make(_ copy: String, from path: String, _ expected: Record) throws -> Record? {
        let temporary = copy + ".partial-\(getpid())"
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard out >= 0 else { return nil }
        var written = false
        defer {
            if !written { unlink(temporary) }
        }
        guard let input = gzopen(path, "rb") else {
            close(out)
            throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { gzclose(input) }
        gzbuffer(input, 1 << 17)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var crc = crc32(0, nil, 0), size = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(input, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                close(out)
                var code: Int32 = 0
                throw DatasetError.unreadable(path: path, reason: gzerror(input, &code).map { String(cString: $0) } ?? "read error")
            }
            if n == 0 { break }
            let ok = chunk.withUnsafeBytes { buffer -> Bool in
                var done = 0
                while done < Int(n) {
                    let w = write(out, buffer.baseAddress! + done, Int(n) - done)
                    if w <= 0 { return false }
                    done += w
                }
                return true
            }
            guard ok else {  // a full disk or a quota: read the file whole instead
                close(out)
                return nil
            }
            crc = chunk.withUnsafeBufferPointer { crc32(crc, $0.baseAddress, uInt(n)) }
            size += Int(n)
        }
        var code: Int32 = 0
        let message = gzerror(input, &code)
        if code != Z_OK && code != Z_STREAM_END {
            close(out)
            throw DatasetError.unreadable(
                path: path, reason: "corrupt or truncated gzip data (\(message.map { String(cString: $0) } ?? "zlib error \(code)"))")
        }
        let synced = fsync(out) == 0, closed = close(out) == 0
        guard synced && closed, rename(temporary, copy) == 0 else { return nil }
        written = true
        var record = expected
        record.size = size
        record.crc32 = UInt32(crc)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard let json = try? encoder.encode(record),
              FileManager.default.createFile(atPath: copy + ".json.partial-\(getpid())", contents: json),
              rename(copy + ".json.partial-\(getpid())", copy + ".json") == 0 else {
            unlink(copy + ".json.partial-\(getpid())")
            return nil
        }
        return record
    }
}
