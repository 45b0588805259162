#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only (`mmap`, shared): its pages live in the page
/// cache, one copy per node whatever the number of ranks that map it, and
/// are read from disk only when touched. Unmapped when the last value that
/// uses it goes.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let byteCount: Int
    let path: String

    /// Maps `path`; nil when it cannot be mapped (a pipe, an empty file).
    init?(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size > 0 else { return nil }
        let size = Int(info.st_size)
        guard let address = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), address != MAP_FAILED else { return nil }
        base = UnsafeRawPointer(address)
        byteCount = size
        self.path = path
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), byteCount) }

    /// The first `count` bytes (or all of them).
    func prefix(_ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: base, count: Swift.min(count, byteCount)))
    }

    /// Whether the file starts with the gzip magic (then it is read, not mapped).
    var isGzipped: Bool { byteCount >= 2 && prefix(2) == [0x1F, 0x8B] }
}
