#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A group of one: every collective is the identity. `vae-mpi` uses it when
/// not started by mpirun, and the unit tests use it.
public final class LocalCommunicator: Communicator {
    public init() {}

    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var hostName: String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {}
    public func reduceScatterSum(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                                 counts: [Int]) throws {
        checkBlocks(counts, total: input.count, size: 1, operation: "reduceScatterSum")
        precondition(output.count == counts[0], "reduceScatterSum: output holds \(output.count), block is \(counts[0])")
        if let source = input.baseAddress, let destination = output.baseAddress {
            destination.update(from: source, count: input.count)
        }
    }
    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        checkBlocks(counts, total: buffer.count, size: 1, operation: "allgather")
    }
    public func alltoall(_ send: UnsafeRawBufferPointer, _ receive: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {
        precondition(send.count == blockBytes && receive.count == blockBytes, "alltoall: one block each")
        if blockBytes > 0 { receive.baseAddress!.copyMemory(from: send.baseAddress!, byteCount: blockBytes) }
    }
    public func allgather(_ buffer: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {
        precondition(buffer.count == blockBytes, "allgather: one block")
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        precondition(root == 0, "broadcast root \(root) in a group of one")
    }
    public func allGather(_ value: UInt64) throws -> [UInt64] { [value] }
    public func barrier() throws {}
    public func abort(exitCode: Int32) -> Never { exit(exitCode) }
}
