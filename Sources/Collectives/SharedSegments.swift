#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Memory that every rank of a job maps when all ranks run on one host: one
/// segment of `count` floats per rank, each rank's writable by it and readable
/// by all (the shared-memory gradient reduction of `DataParallelOptimizer`).
///
/// Rank 0 creates a POSIX shared-memory object with a random name, reserves
/// its pages (`posix_fallocate`, so that a full /dev/shm is an error here and
/// never a SIGBUS later) and writes a random token into its first page; the
/// others map it by name and compare the token. Whether every rank found the
/// same memory is agreed in one reduction, so all ranks use it or none does
/// (ranks on other hosts cannot open the name, or see another object). The
/// name is unlinked as soon as every rank has mapped it: nothing is left in
/// /dev/shm, whatever happens to the job afterwards.
public final class SharedSegments {
    /// Each rank's segment, indexed by rank.
    public let segments: [UnsafeMutablePointer<Float>]
    /// Floats per segment.
    public let count: Int
    private let mapping: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let communicator: Communicator

    private init(mapping: UnsafeMutableRawPointer, mappedBytes: Int, segmentBytes: Int, count: Int,
                 communicator: Communicator) {
        self.mapping = mapping
        self.mappedBytes = mappedBytes
        self.count = count
        self.communicator = communicator
        segments = (0..<communicator.size).map {
            (mapping + Self.headerBytes + $0 * segmentBytes).bindMemory(to: Float.self, capacity: count)
        }
    }

    deinit { munmap(mapping, mappedBytes) }

    private static let headerBytes = 4096

    /// What `make` found: the segments, or why there are none.
    public enum Outcome {
        case shared(SharedSegments)
        case unavailable(reason: String)
    }

    /// Collective: every rank calls it, and every rank gets segments or every
    /// rank gets none: with one rank, when the ranks do not share memory, or
    /// when the memory cannot be had (the reason names which).
    public static func make(count: Int, communicator: Communicator) throws -> Outcome {
        guard communicator.size > 1 else { return .unavailable(reason: "one rank") }
        let segmentBytes = (count * MemoryLayout<Float>.stride + 4095) / 4096 * 4096
        let mappedBytes = headerBytes + segmentBytes * communicator.size
        var token = [UInt64](repeating: 0, count: 1)
        var name = ""
        var mapping: UnsafeMutableRawPointer? = nil
        var failure: String? = nil
        if communicator.rank == 0 {
            var random = SystemRandomNumberGenerator()
            token[0] = random.next() | 1
            name = "/vae-mpi-\(getpid())-\(String(random.next(), radix: 16))"
            (mapping, failure) = create(name: name, bytes: mappedBytes)
            if let mapping { mapping.storeBytes(of: token[0], as: UInt64.self) } else { name = "" }
        }
        let nameBytes = try communicator.broadcast(bytes: Array(name.utf8), root: 0)
        try token.withUnsafeMutableBytes { try communicator.broadcast($0, root: 0) }
        if communicator.rank != 0 {
            if nameBytes.isEmpty {
                failure = "rank 0 could not create the shared memory"
            } else {
                (mapping, failure) = open(name: String(decoding: nameBytes, as: UTF8.self), bytes: mappedBytes)
                if let found = mapping, found.load(as: UInt64.self) != token[0] {
                    failure = "rank \(communicator.rank) runs on another host"
                    munmap(found, mappedBytes)
                    mapping = nil
                }
            }
        }
        // Every rank has opened the name (or failed to) once this reduction returns.
        var failed = [Double](repeating: 0, count: communicator.size)
        if mapping == nil { failed[communicator.rank] = 1 }
        try communicator.allreduceSum(&failed)
        if communicator.rank == 0, !name.isEmpty { shm_unlink(name) }
        guard failed.allSatisfy({ $0 == 0 }), let mapping else {
            if let mapping { munmap(mapping, mappedBytes) }
            let ranks = failed.indices.filter { failed[$0] != 0 }
            return .unavailable(reason: failure ?? "rank\(ranks.count > 1 ? "s" : "") "
                                    + ranks.map(String.init).joined(separator: ", ") + " could not map the shared memory")
        }
        return .shared(SharedSegments(mapping: mapping, mappedBytes: mappedBytes, segmentBytes: segmentBytes,
                                      count: count, communicator: communicator))
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }

    private static func create(name: String, bytes: Int) -> (UnsafeMutableRawPointer?, String?) {
        let fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0o600)
        guard fd >= 0 else { return (nil, "shm_open: \(errorText())") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            let reason = "ftruncate: \(errorText())"
            shm_unlink(name)
            return (nil, reason)
        }
        // Reserve every page now: on a full tmpfs this fails here instead of faulting later.
        let rc = posix_fallocate(fd, 0, off_t(bytes))
        guard rc == 0 else {
            shm_unlink(name)
            return (nil, "reserving \(bytes) bytes in /dev/shm: \(String(cString: strerror(rc)))")
        }
        return map(fd: fd, bytes: bytes, name: name, unlinkOnFailure: true)
    }

    private static func open(name: String, bytes: Int) -> (UnsafeMutableRawPointer?, String?) {
        let fd = shm_open(name, O_RDWR, 0)
        guard fd >= 0 else { return (nil, "shm_open: \(errorText())") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, Int(status.st_size) == bytes else { return (nil, "another object of that name") }
        return map(fd: fd, bytes: bytes, name: name, unlinkOnFailure: false)
    }

    private static func map(fd: Int32, bytes: Int, name: String, unlinkOnFailure: Bool)
        -> (UnsafeMutableRawPointer?, String?)
    {
        let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let address, address != MAP_FAILED else {
            let reason = "mmap: \(errorText())"
            if unlinkOnFailure { shm_unlink(name) }
            return (nil, reason)
        }
        return (address, nil)
    }

    /// Returns once every rank has called it, with every rank's writes before
    /// the call visible to every rank after it (a fence, the communicator's
    /// barrier — watched by the stall watchdog — and a fence).
    public func synchronize() throws {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        try communicator.barrier()
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }
}
