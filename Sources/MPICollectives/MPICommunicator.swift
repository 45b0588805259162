import CMPI
import Collectives
#if canImport(Glibc)
import Glibc
#endif

/// `Communicator` over MPI_COMM_WORLD (Open MPI). The only Swift code that
/// imports MPI.
///
/// Errors are returned, not fatal (MPI_ERRORS_RETURN), and thrown as
/// `CommunicationError` with `MPI_Error_string`'s text and the rank.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let hostName: String
    private var finalized = false
    /// Watches this rank's collectives (`--collective-timeout`); set by the executable.
    public var watchdog: CollectiveWatchdog?

    /// Initializes MPI. Call once per process.
    public init() throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            let rc = MPI_Init(nil, nil)
            guard rc == cmpi_success() else {
                throw CommunicationError(operation: "MPI_Init", rank: -1, message: Self.errorString(rc))
            }
        }
        MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        MPI_Comm_size(cmpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
        var name = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var length: Int32 = 0
        MPI_Get_processor_name(&name, &length)
        hostName = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Ends MPI for this process (after the last collective).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        // MPI_Finalize waits for every rank without a timeout; a watched barrier
        // first, so that a rank stalled in its last step ends the job too.
        watchdog?.set(phase: .finish)
        try? check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier")
        MPI_Finalize()
    }

    /// Runs one MPI call (bracketed for the stall watchdog) and throws its error.
    private func check(_ call: @autoclosure () -> Int32, _ operation: String) throws {
        watchdog?.entering(operation)
        let rc = call()
        watchdog?.left()
        if rc != cmpi_success() {
            throw CommunicationError(operation: operation, rank: rank, message: Self.errorString(rc))
        }
    }

    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard size > 1, !buffer.isEmpty else { return }
        try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count),
                                cmpi_float(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Allreduce")
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard size > 1, !buffer.isEmpty else { return }
        try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count),
                                cmpi_double(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Allreduce")
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        guard size > 1, !buffer.isEmpty else { return }
        precondition(buffer.count <= Int(Int32.max), "allreduceSum: \(buffer.count) elements exceed MPI's int count")
        try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count),
                                cmpi_int64(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Allreduce")
    }

    /// MPI counts are 32-bit: larger blocks are a programmer error here (a
    /// model of 2³¹ parameters is far beyond what a CPU trainer holds).
    private func int32Counts(_ counts: [Int], _ operation: String) -> [Int32] {
        counts.map { count in
            precondition(count <= Int(Int32.max), "\(operation): block of \(count) elements exceeds MPI's int count")
            return Int32(count)
        }
    }

    public func reduceScatterSum(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                                 counts: [Int]) throws {
        checkBlocks(counts, total: input.count, size: size, operation: "reduceScatterSum")
        precondition(output.count == counts[rank], "reduceScatterSum: output holds \(output.count), block is \(counts[rank])")
        guard !input.isEmpty else { return }
        if size == 1 {
            output.baseAddress!.update(from: input.baseAddress!, count: input.count)
            return
        }
        var receiveCounts = int32Counts(counts, "MPI_Reduce_scatter")
        // An empty output block still needs a valid (unused) address.
        var spare: Float = 0
        try withUnsafeMutablePointer(to: &spare) { spareAddress in
            try check(MPI_Reduce_scatter(input.baseAddress, output.baseAddress ?? spareAddress, &receiveCounts,
                                         cmpi_float(), cmpi_op_sum(), cmpi_comm_world()), "MPI_Reduce_scatter")
        }
    }

    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        checkBlocks(counts, total: buffer.count, size: size, operation: "allgather")
        guard size > 1, !buffer.isEmpty else { return }
        var receiveCounts = int32Counts(counts, "MPI_Allgatherv")
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<size { displacements[r] = displacements[r - 1] + receiveCounts[r - 1] }
        try check(MPI_Allgatherv(cmpi_in_place(), 0, cmpi_float(), buffer.baseAddress, &receiveCounts, &displacements,
                                 cmpi_float(), cmpi_comm_world()), "MPI_Allgatherv")
    }

    public func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard size > 1, !buffer.isEmpty else { return }
        try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, Int32(buffer.count),
                                cmpi_double(), cmpi_op_max(), cmpi_comm_world()), "MPI_Allreduce")
    }

    public func alltoall(_ send: UnsafeRawBufferPointer, _ receive: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {
        precondition(send.count == blockBytes * size && receive.count == blockBytes * size, "alltoall: one block per rank")
        precondition(blockBytes <= Int(Int32.max), "alltoall: block of \(blockBytes) bytes exceeds MPI's int count")
        guard blockBytes > 0 else { return }
        if size == 1 {
            receive.baseAddress!.copyMemory(from: send.baseAddress!, byteCount: blockBytes)
            return
        }
        try check(MPI_Alltoall(send.baseAddress, Int32(blockBytes), cmpi_byte(), receive.baseAddress, Int32(blockBytes),
                               cmpi_byte(), cmpi_comm_world()), "MPI_Alltoall")
    }

    public func allgather(_ buffer: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {
        precondition(buffer.count == blockBytes * size, "allgather: one block per rank")
        precondition(blockBytes <= Int(Int32.max), "allgather: block of \(blockBytes) bytes exceeds MPI's int count")
        guard size > 1, blockBytes > 0 else { return }
        try check(MPI_Allgather(cmpi_in_place(), 0, cmpi_byte(), buffer.baseAddress, Int32(blockBytes), cmpi_byte(),
                                cmpi_comm_world()), "MPI_Allgather")
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1, !buffer.isEmpty else { return }
        try check(MPI_Bcast(buffer.baseAddress, Int32(buffer.count), cmpi_byte(), Int32(root),
                            cmpi_comm_world()), "MPI_Bcast")
    }

    public func allGather(_ value: UInt64) throws -> [UInt64] {
        var send = value
        var out = [UInt64](repeating: 0, count: size)
        try out.withUnsafeMutableBufferPointer { dst in
            try check(MPI_Allgather(&send, 1, cmpi_uint64(), dst.baseAddress, 1, cmpi_uint64(),
                                    cmpi_comm_world()), "MPI_Allgather")
        }
        return out
    }

    public func allRanksOnOneNode() throws -> Bool {
        guard size > 1 else { return true }
        var node: MPI_Comm? = nil
        try check(MPI_Comm_split_type(cmpi_comm_world(), cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
                  "MPI_Comm_split_type")
        defer { MPI_Comm_free(&node) }
        var nodeSize: Int32 = 0
        MPI_Comm_size(node, &nodeSize)
        // The same answer on every rank: all ranks are in one node's group, or none is in a group of all.
        return Int(nodeSize) == size
    }

    public func barrier() throws {
        try check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier")
    }

    public func abort(exitCode: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), exitCode)
        exit(exitCode)
    }
}
