#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks every collective of a communicator against values computed
/// independently on each rank, and times the reductions. Each rank fills
/// its buffers from its rank and the element index with small integers,
/// which floats add exactly in any order, so the expected results are known
/// exactly. `vae-mpi check-mpi` runs it on a cluster; the tests run it at
/// several world sizes.
public struct CollectiveCheck {
    public struct Result: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    public struct Timing: Sendable {
        public var operation: String
        public var elements: Int
        /// Median seconds per call over the repeats.
        public var seconds: Double
    }

    let communicator: Communicator

    public init(_ communicator: Communicator) {
        self.communicator = communicator
    }

    /// A value rank r contributes at index i: an integer below 2^10, exact in Float.
    static func value(rank: Int, index: Int) -> Float { Float((rank * 37 + index * 11) % 1021) }

    /// Runs every check with buffers of `count` floats; every rank returns
    /// the same verdicts (they are combined with an allreduce).
    public func verify(count: Int) throws -> [Result] {
        let (rank, size) = (communicator.rank, communicator.size)
        func sumOverRanks(_ i: Int) -> Float { (0..<size).reduce(Float(0)) { $0 + Self.value(rank: $1, index: i) } }
        var results: [(String, Bool, String)] = []

        var reduced = (0..<count).map { Self.value(rank: rank, index: $0) }
        try communicator.allreduceSum(&reduced)
        let badReduce = (0..<count).first { reduced[$0] != sumOverRanks($0) }
        results.append(("allreduce (sum)", badReduce == nil,
                        badReduce.map { "element \($0): \(reduced[$0]), expected \(sumOverRanks($0))" } ?? ""))

        // 64-bit integers beyond Float's and Double's exact range: only an exact integer sum gives these.
        func integer(rank: Int, index: Int) -> Int64 { (Int64(1) << 60) / Int64(size) + Int64(rank * 37 + index * 11) }
        var integers = (0..<count).map { integer(rank: rank, index: $0) }
        try communicator.allreduceSum(&integers)
        func integerSum(_ i: Int) -> Int64 { (0..<size).reduce(Int64(0)) { $0 + integer(rank: $1, index: i) } }
        let badIntegers = (0..<count).first { integers[$0] != integerSum($0) }
        results.append(("allreduce (64-bit integer sum)", badIntegers == nil,
                        badIntegers.map { "element \($0): \(integers[$0]), expected \(integerSum($0))" } ?? ""))

        let blocks = communicator.evenBlocks(count)
        let offset = blocks[..<rank].reduce(0, +)
        let input = (0..<count).map { Self.value(rank: rank, index: $0) }
        var block = [Float](repeating: -1, count: blocks[rank])
        try input.withUnsafeBufferPointer { i in
            try block.withUnsafeMutableBufferPointer { try communicator.reduceScatterSum(i, into: $0, counts: blocks) }
        }
        let badScatter = block.indices.first { block[$0] != sumOverRanks(offset + $0) }
        results.append(("reduce-scatter (sum)", badScatter == nil,
                        badScatter.map { "element \(offset + $0): \(block[$0]), expected \(sumOverRanks(offset + $0))" } ?? ""))

        // Each rank fills only its own block; the allgather fills the rest.
        var gathered = [Float](repeating: -1, count: count)
        for i in 0..<blocks[rank] { gathered[offset + i] = Self.value(rank: rank, index: offset + i) }
        try gathered.withUnsafeMutableBufferPointer { try communicator.allgather($0, counts: blocks) }
        var owner = [Int](repeating: 0, count: count)
        var start = 0
        for (r, n) in blocks.enumerated() {
            for i in start ..< start + n { owner[i] = r }
            start += n
        }
        let badGather = (0..<count).first { gathered[$0] != Self.value(rank: owner[$0], index: $0) }
        results.append(("allgather (blocks)", badGather == nil,
                        badGather.map { "element \($0): \(gathered[$0]), expected \(Self.value(rank: owner[$0], index: $0))" } ?? ""))

        var broadcast = (0..<min(count, 4096)).map { Float(rank == size - 1 ? $0 : -1) }
        try broadcast.withUnsafeMutableBytes { try communicator.broadcast($0, root: size - 1) }
        let badBroadcast = broadcast.indices.first { broadcast[$0] != Float($0) }
        results.append(("broadcast (from the last rank)", badBroadcast == nil,
                        badBroadcast.map { "element \($0): \(broadcast[$0])" } ?? ""))

        // Bytes: rank r's block q holds (r, q); every rank must receive (q, r) in block q.
        let blockBytes = 3
        var send = [UInt8](repeating: 0, count: blockBytes * size)
        for q in 0..<size { send[q * blockBytes] = UInt8(rank & 255); send[q * blockBytes + 1] = UInt8(q & 255); send[q * blockBytes + 2] = 7 }
        var received = [UInt8](repeating: 0, count: blockBytes * size)
        try send.withUnsafeBytes { s in try received.withUnsafeMutableBytes { try communicator.alltoall(s, $0, blockBytes: blockBytes) } }
        let badExchange = (0..<size).first { q in
            received[q * blockBytes] != UInt8(q & 255) || received[q * blockBytes + 1] != UInt8(rank & 255)
                || received[q * blockBytes + 2] != 7
        }
        results.append(("alltoall (bytes)", badExchange == nil, badExchange.map { "block \($0) arrived wrong" } ?? ""))
        var gatheredBytes = [UInt8](repeating: 0, count: blockBytes * size)
        for i in 0..<blockBytes { gatheredBytes[rank * blockBytes + i] = UInt8((rank * 11 + i) & 255) }
        try gatheredBytes.withUnsafeMutableBytes { try communicator.allgather($0, blockBytes: blockBytes) }
        let badBytes = (0..<(blockBytes * size)).first { gatheredBytes[$0] != UInt8((($0 / blockBytes) * 11 + $0 % blockBytes) & 255) }
        results.append(("allgather (bytes)", badBytes == nil, badBytes.map { "byte \($0) arrived wrong" } ?? ""))

        let hashes = try communicator.allGather(UInt64(rank) &* 0x9E37_79B9_7F4A_7C15)
        let badHashes = hashes.indices.first { hashes[$0] != UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }
        results.append(("allgather (one value per rank)", badHashes == nil,
                        badHashes.map { "rank \($0)'s value arrived as \(hashes[$0])" } ?? ""))

        // Every rank learns every rank's verdicts.
        var failures = results.map { $0.1 ? 0.0 : 1.0 }
        try communicator.allreduceSum(&failures)
        return results.enumerated().map { i, r in
            Result(name: r.0, passed: failures[i] == 0,
                   detail: failures[i] == 0 ? "" : (r.2.isEmpty ? "failed on \(Int(failures[i])) rank(s)" : r.2))
        }
    }

    /// Median time per call of the allreduce, and of a reduce-scatter
    /// followed by an allgather, for each buffer size (floats), over
    /// `repeats` calls after one warm-up call. The ranks start each call
    /// together (a barrier), and the slowest rank's time counts.
    public func time(sizes: [Int], repeats: Int) throws -> [Timing] {
        var out: [Timing] = []
        for n in sizes {
            // Page-aligned, as the trainer's reduction buffer: the copies of
            // shared-memory transports run at half speed or worse when the
            // ranks' buffers sit at different offsets within a cache line.
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 4096)
            defer { raw.deallocate() }
            let buffer = UnsafeMutableBufferPointer(start: raw.bindMemory(to: Float.self, capacity: n), count: n)
            buffer.initialize(repeating: 1)
            let blocks = communicator.evenBlocks(n)
            var block = [Float](repeating: 0, count: blocks[communicator.rank])
            func measure(_ body: () throws -> Void) throws -> Double {
                var samples: [Double] = []
                for r in 0...repeats {
                    try communicator.barrier()
                    let t0 = Self.now()
                    try body()
                    var elapsed = [Self.now() - t0]
                    try communicator.allreduceMax(&elapsed)
                    if r > 0 { samples.append(elapsed[0]) }
                }
                return samples.sorted()[samples.count / 2]
            }
            out.append(Timing(operation: "allreduce", elements: n, seconds: try measure {
                try communicator.allreduceSum(buffer)
            }))
            out.append(Timing(operation: "reduce-scatter + allgather", elements: n, seconds: try measure {
                try block.withUnsafeMutableBufferPointer {
                    try communicator.reduceScatterSum(UnsafeBufferPointer(buffer), into: $0, counts: blocks)
                }
                try communicator.allgather(buffer, counts: blocks)
            }))
        }
        return out
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
