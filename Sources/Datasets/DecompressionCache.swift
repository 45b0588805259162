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
        var name = (path as NSString).lastPathComponent
        if name.lowercased().hasSuffix(".gz") { name.removeLast(3) }
        return try cached(path, variant: nil, name: name) { emit in try gunzip(path, emit) }
    }

    /// The checked copy of what `produce` makes of the file at `path`
    /// (`variant` says what, when it is not the file's decompression: a
    /// dataset of an HDF5 file, say), made by one process when missing or
    /// failing its check; nil when caching is off or the folder cannot take
    /// it. `produce` hands its bytes, in order, to the function it is given.
    static func cached(_ path: String, variant: String?, name: String,
                       produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> String? {
        guard let folder = directory else { return nil }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let absolute = (realpath(path, nil)).map { p in defer { free(p) }; return String(cString: p) } ?? path
        let source = absolute + (variant.map { ":" + $0 } ?? "")
        let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        let size = Int(info.st_size)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in Array("\(source)\u{0}\(size)\u{0}\(modified)".utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
        }
        let copy = folder + "/" + name + "." + String(hash, radix: 16)
        let expected = Record(source: source, sourceSize: size, sourceModified: modified, size: 0, crc32: 0)
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
        guard let record = try make(copy, expected, produce: produce) else { return nil }
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
        let crc = checksum(continuing: crc32(0, nil, 0), UnsafeRawBufferPointer(start: file.base, count: file.byteCount))
        return UInt32(crc) == record.crc32
    }

    /// `crc` continued over `bytes`, a GiB at a time (zlib takes 32-bit lengths).
    static func checksum(continuing crc: uLong, _ bytes: UnsafeRawBufferPointer) -> uLong {
        var crc = crc, offset = 0
        while offset < bytes.count {
            let n = min(1 << 30, bytes.count - offset)
            crc = crc32(crc, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
            offset += n
        }
        return crc
    }

    /// The copy could not be written (a full disk, a quota).
    struct WriteFailed: Error {}

    /// Writes what `produce` makes into `copy` (through a temporary file) and
    /// its record; nil when the folder cannot take it (the caller then reads
    /// the file itself). Errors of `produce` pass through, leaving nothing.
    static func make(_ copy: String, _ expected: Record,
                     produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> Record? {
        let temporary = copy + ".partial-\(getpid())"
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard out >= 0 else { return nil }
        var closed = false
        defer {
            if !closed { close(out) }
            unlink(temporary)
        }
        var crc = crc32(0, nil, 0), size = 0
        do {
            try produce { bytes in
                var done = 0
                while done < bytes.count {
                    let w = write(out, bytes.baseAddress! + done, bytes.count - done)
                    if w <= 0 { throw WriteFailed() }
                    done += w
                }
                crc = checksum(continuing: crc, bytes)
                size += bytes.count
            }
        } catch is WriteFailed {
            return nil
        }
        let synced = fsync(out) == 0
        closed = true
        guard close(out) == 0, synced, rename(temporary, copy) == 0 else { return nil }
        var record = expected
        record.size = size
        record.crc32 = UInt32(crc)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let partial = copy + ".json.partial-\(getpid())"
        guard let json = try? encoder.encode(record), FileManager.default.createFile(atPath: partial, contents: json),
              rename(partial, copy + ".json") == 0 else {
            unlink(partial)
            return nil
        }
        return record
    }

    /// The decompressed bytes of gzipped `path`, a MiB at a time.
    static func gunzip(_ path: String, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let input = gzopen(path, "rb") else {
            throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { gzclose(input) }
        gzbuffer(input, 1 << 17)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(input, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var code: Int32 = 0
                throw DatasetError.unreadable(path: path, reason: gzerror(input, &code).map { String(cString: $0) } ?? "read error")
            }
            if n == 0 { break }
            try chunk.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)])) }
        }
        var code: Int32 = 0
        let message = gzerror(input, &code)
        if code != Z_OK && code != Z_STREAM_END {
            throw DatasetError.unreadable(
                path: path, reason: "corrupt or truncated gzip data (\(message.map { String(cString: $0) } ?? "zlib error \(code)"))")
        }
    }
}
