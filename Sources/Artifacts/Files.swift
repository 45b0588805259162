#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File-system helpers with errors that name the path.
public enum Files {
    /// Writes `bytes` to `path` so that readers see either the old file or the
    /// complete new one, never a partial write, even after a crash or kill -9:
    /// write to a temporary file beside it, fsync, rename over `path`, fsync
    /// the directory (so the rename itself is durable).
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError(path, "create") }  // the user's name, not the temporary one
        var ok = false
        defer { if !ok { unlink(temporary) } }
        do {
            defer { close(fd) }
            try bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw ioError(path, "write")
                    }
                    offset += n
                }
            }
            guard fsync(fd) == 0 else { throw ioError(path, "fsync") }
        }
        guard rename(temporary, path) == 0 else { throw ioError(path, "rename") }
        ok = true
        syncDirectory(of: path)
    }

    /// Writes a UTF-8 string atomically (see `writeAtomically(_:to:)`).
    public static func writeAtomically(_ text: String, to path: String) throws {
        try writeAtomically(Array(text.utf8), to: path)
    }

    /// Reads a whole file.
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError(path, "open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError(path, "stat") }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        try bytes.withUnsafeMutableBytes { raw in
            while offset < size {
                let n = Glibc.read(fd, raw.baseAddress! + offset, size - offset)
                if n < 0 { if errno == EINTR { continue }; throw ioError(path, "read") }
                if n == 0 { break }
                offset += n
            }
        }
        return Array(bytes[0..<offset])
    }

    /// Reads a whole file as UTF-8 text.
    public static func readText(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// Creates `path` and its missing parents (like `mkdir -p`).
    public static func createDirectory(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw ioError(prefix, "mkdir")
            }
            var st = stat()
            if stat(prefix, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
                throw ArtifactError.io(path: prefix, operation: "mkdir", reason: "exists and is not a directory")
            }
            prefix += "/"
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names of the entries of a directory (no "." or ".."), sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw ioError(path, "opendir") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw ioError(path, "remove") }
    }

    static func syncDirectory(of path: String) {
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    static func ioError(_ path: String, _ operation: String) -> ArtifactError {
        .io(path: path, operation: operation, reason: String(cString: strerror(errno)))
    }
}

/// A file that is only appended to, each write flushed, for logs read while
/// the run goes on (metrics.jsonl, TensorBoard events).
public final class AppendingFile {
    public let path: String
    private let file: UnsafeMutablePointer<FILE>

    /// Opens `path` for appending (creating it if needed).
    public init(appendingTo path: String) throws {
        guard let f = fopen(path, "ab") else { throw Files.ioError(path, "open for append") }
        self.path = path
        file = f
    }

    public func write(_ bytes: [UInt8]) throws {
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard written == bytes.count, fflush(file) == 0 else { throw Files.ioError(path, "write") }
    }

    /// Writes `line` and a newline.
    public func write(line: String) throws {
        try write(Array((line.hasSuffix("\n") ? line : line + "\n").utf8))
    }

    deinit { fclose(file) }
}
