/// The collective operations the trainer needs, over a fixed group of ranks.
///
/// Training code always calls the communicator, with one rank or many; with
/// `LocalCommunicator` (size 1) every operation is the identity. All
/// operations are collective: every rank must call them in the same order.
public protocol Communicator: AnyObject {
    /// This process's index, 0 ..< size.
    var rank: Int { get }
    /// Number of ranks.
    var size: Int { get }
    /// Name of the host this rank runs on (for messages).
    var hostName: String { get }

    /// Element-wise sum over all ranks, in place.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Element-wise sum over all ranks, in place.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Element-wise maximum over all ranks, in place.
    func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Element-wise sum of 64-bit integers over all ranks, in place: exact
    /// and associative, so the result does not depend on the grouping
    /// (the fixed-point gradient sums of `--reproducible`).
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws
    /// Sums `input` over all ranks and writes this rank's block of the sum to
    /// `output`. The blocks are `counts` long, in rank order: Σ counts ==
    /// input.count and output.count == counts[rank]. (The reduce-scatter of a
    /// sharded optimizer: each rank receives the gradient of its slice.)
    func reduceScatterSum(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                          counts: [Int]) throws
    /// Gathers every rank's block of `buffer` into every rank's `buffer`, in
    /// place: block r is counts[r] elements at offset Σ_{q<r} counts[q], and
    /// this rank's block is read from its place. (The allgather of updated
    /// parameter slices.)
    func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws
    /// Rank r's block q of `send` goes to rank q, which receives it as its
    /// block r of `receive`; every block is `blockBytes` long.
    func alltoall(_ send: UnsafeRawBufferPointer, _ receive: UnsafeMutableRawBufferPointer, blockBytes: Int) throws
    /// Every rank's block (`blockBytes` at offset rank·blockBytes) of `buffer`
    /// into every rank's `buffer`, in place.
    func allgather(_ buffer: UnsafeMutableRawBufferPointer, blockBytes: Int) throws
    /// Copies `root`'s bytes into every rank's buffer (all buffers the same size).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Every rank's `value`, indexed by rank.
    func allGather(_ value: UInt64) throws -> [UInt64]
    /// Returns once every rank has called it.
    func barrier() throws
    /// Ends every rank of the job at once (MPI_Abort). For errors that other
    /// ranks cannot learn about because they are waiting in a collective.
    func abort(exitCode: Int32) -> Never
    /// The stall watchdog watching this rank's collectives, if any: the
    /// training loop tells it which phase and step the rank is in.
    var watchdog: CollectiveWatchdog? { get }
    /// Whether every rank runs on one node as the launcher placed them (MPI's
    /// shared-memory split); collective. The shared-memory reduction is used
    /// only then, so ranks that the job treats as separate hosts talk through
    /// MPI even where they happen to share a machine.
    func allRanksOnOneNode() throws -> Bool
}

extension Communicator {
    public var watchdog: CollectiveWatchdog? { nil }
    public func allRanksOnOneNode() throws -> Bool { true }
}

/// A failure of the communication layer (MPI error code and its message).
public struct CommunicationError: Error, CustomStringConvertible {
    public let operation: String
    public let rank: Int
    public let message: String

    public init(operation: String, rank: Int, message: String) {
        self.operation = operation
        self.rank = rank
        self.message = message
    }

    public var description: String { "\(operation) failed on rank \(rank): \(message)" }
}

/// Thrown on ranks whose own work succeeded when another rank failed at a
/// point where all ranks compare notes (see `Communicator.collectively`). The
/// failing rank reports its own error; these ranks just stop.
public struct PeerFailure: Error, CustomStringConvertible {
    public let failedRanks: [Int]
    public var description: String {
        "stopping because rank\(failedRanks.count > 1 ? "s" : "") \(failedRanks.map(String.init).joined(separator: ", ")) failed"
    }
}

/// An error that every rank knows about, so the job can end cleanly, without
/// MPI_Abort: every rank throws, and exactly one (`reporter`) prints it.
public struct CollectiveFailure: Error, CustomStringConvertible {
    public let underlying: Error
    /// Whether this rank prints the error.
    public let reporter: Bool
    /// Other ranks that failed the same way (named in the message).
    public let otherFailedRanks: [Int]
    /// Whether the message should name the reporting rank: yes when the
    /// error arose on particular ranks, no when it is about the whole job.
    public let concernsRank: Bool

    public init(underlying: Error, reporter: Bool, otherFailedRanks: [Int] = [], concernsRank: Bool = true) {
        self.underlying = underlying
        self.reporter = reporter
        self.otherFailedRanks = otherFailedRanks
        self.concernsRank = concernsRank
    }

    /// An error that every rank detected identically (from data they share
    /// after a collective, such as the step's allreduce): rank 0 reports it,
    /// as an error of the job.
    public static func unanimous(_ error: Error, rank: Int) -> CollectiveFailure {
        CollectiveFailure(underlying: error, reporter: rank == 0, concernsRank: false)
    }

    public var description: String { describe { "\($0)" } }

    /// The message, with the underlying error worded by `render`.
    public func describe(_ render: (Error) -> String) -> String {
        let others = otherFailedRanks
        let suffix = others.isEmpty ? "" :
            " (rank\(others.count > 1 ? "s" : "") \(others.map(String.init).joined(separator: ", ")) failed too)"
        return render(underlying) + suffix
    }
}

/// Checks the block sizes of a reduce-scatter or an allgather (a programmer
/// error if they do not add up).
public func checkBlocks(_ counts: [Int], total: Int, size: Int, operation: String) {
    precondition(counts.count == size && counts.allSatisfy { $0 >= 0 } && counts.reduce(0, +) == total,
                 "\(operation): block sizes \(counts) do not divide \(total) elements over \(size) ranks")
}

extension Communicator {
    /// One rank holds the sum already (test doubles of one rank need not
    /// implement the integer reduction).
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        precondition(size == 1, "allreduceSum(Int64) is not implemented by \(type(of: self))")
    }

    public func allreduceSum(_ array: inout [Int64]) throws {
        try array.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    /// Block sizes that split `count` elements over the ranks as evenly as
    /// possible (the first `count % size` blocks one larger).
    public func evenBlocks(_ count: Int) -> [Int] {
        (0..<size).map { count / size + ($0 < count % size ? 1 : 0) }
    }

    public func allreduceSum(_ array: inout [Float]) throws {
        try array.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    public func allreduceSum(_ array: inout [Double]) throws {
        try array.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    public func allreduceMax(_ array: inout [Double]) throws {
        try array.withUnsafeMutableBufferPointer { try allreduceMax($0) }
    }

    public func broadcast(_ array: inout [Float], root: Int = 0) throws {
        try array.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Broadcasts a byte string of any length from `root` (length first).
    public func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var length = [UInt64(bytes.count)]
        try length.withUnsafeMutableBytes { try broadcast($0, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    /// Runs `body` on every rank, then agrees on the outcome: if it threw on
    /// any rank, every rank throws — `CollectiveFailure` where it failed,
    /// `PeerFailure` elsewhere — so no rank goes on into a collective that
    /// another rank will never join. Use it around setup work that can fail
    /// for user reasons (reading data, creating the run directory).
    public func collectively<T>(_ body: () throws -> T) throws -> T {
        var result: Result<T, Error>
        do { result = .success(try body()) } catch { result = .failure(error) }
        var flags = [Double](repeating: 0, count: size)
        if case .failure = result { flags[rank] = 1 }
        try allreduceSum(&flags)
        let failed = flags.indices.filter { flags[$0] != 0 }
        switch result {
        case .success(let value):
            if !failed.isEmpty { throw PeerFailure(failedRanks: failed) }
            return value
        case .failure(let error):
            // The lowest failing rank reports; the others stay quiet.
            throw CollectiveFailure(underlying: error, reporter: failed.first == rank,
                                    otherFailedRanks: failed.filter { $0 != rank })
        }
    }
}
