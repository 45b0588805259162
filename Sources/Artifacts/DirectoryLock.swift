#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One writer per directory: an `flock`-held lock file, `DIR/.vae-mpi.lock`,
/// naming the holder ("pid 1234 on host node07 since 2026-12-02T08:15:00Z").
///
/// The kernel releases an flock when its holder dies, however it dies, so a
/// lock file left behind by a killed run does not block the next one: the
/// next run takes it over (and says whose it was). The file is removed on
/// release; a taker checks that the file it locked is still the one at the
/// path (a release may unlink it between open and flock) and retries if not.
public final class DirectoryLock {
    public static let fileName = ".vae-mpi.lock"

    public let directory: String
    public let path: String
    /// Whether acquiring created the directory (and releasing should remove it if empty).
    public let createdDirectory: Bool
    /// The holder named by a lock file a dead process left, if there was one.
    public let tookOverFrom: String?
    private var fd: Int32

    /// Takes the lock on `directory` (created if missing), or throws
    /// `ArtifactError.locked` naming the process that holds it.
    public init(directory: String, holder: String) throws {
        self.directory = directory
        path = directory + "/" + Self.fileName
        let existed = Files.isDirectory(directory)
        try Files.createDirectory(directory)
        createdDirectory = !existed
        var attempts = 0
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw ArtifactError.io(path: path, operation: "create", reason: String(cString: strerror(errno))) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                // The holder writes its name just after it takes the lock: a
                // file read in between is empty, so wait for the name (≤ 1 s).
                var current = Self.read(fd)
                var waits = 0
                while code == EWOULDBLOCK && current.isEmpty && waits < 50 {
                    usleep(20_000)
                    waits += 1
                    current = Self.read(fd)
                }
                close(fd)
                if code == EWOULDBLOCK {
                    throw ArtifactError.locked(path: directory, holder: current.isEmpty ? "another process" : current)
                }
                throw ArtifactError.io(path: path, operation: "lock", reason: String(cString: strerror(code)))
            }
            // The file at the path must be the one locked (not one a releasing holder just unlinked).
            var held = stat(), named = stat()
            if fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev {
                let previous = Self.read(fd)
                tookOverFrom = previous.isEmpty ? nil : previous
                self.fd = fd
                break
            }
            close(fd)
            attempts += 1
            if attempts > 100 { throw ArtifactError.io(path: path, operation: "lock", reason: "the lock file keeps changing") }
        }
        // Written over the old name and then cut to length, so a reader never
        // sees an empty file; it reads the first line only.
        let text = Array((holder + "\n").utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        _ = ftruncate(fd, off_t(text.count))
        _ = fsync(fd)
    }

    private static func read(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return "" }
        let line = buffer[0..<n].split(separator: UInt8(ascii: "\n"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        return String(decoding: line, as: UTF8.self).trimmingWhitespace()
    }

    /// Removes the lock file and releases the lock (and removes the
    /// directory if acquiring created it and nothing else was written).
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
        if createdDirectory { rmdir(directory) }   // fails, harmlessly, unless empty
    }

    deinit { release() }
}
