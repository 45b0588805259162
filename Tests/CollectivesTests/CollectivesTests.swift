import XCTest
@testable import Collectives

/// The one-rank communicator and the collective self-check (the multi-rank
/// tests run the same check under mpirun at 1 to 4 ranks: `vae-mpi check-mpi`).
final class CollectivesTests: XCTestCase {
    func testLocalReduceScatterAndAllgather() throws {
        let local = LocalCommunicator()
        XCTAssertEqual(local.evenBlocks(10), [10])
        let input: [Float] = [1, 2, 3, 4, 5]
        var output = [Float](repeating: 0, count: 5)
        try input.withUnsafeBufferPointer { i in
            try output.withUnsafeMutableBufferPointer { try local.reduceScatterSum(i, into: $0, counts: [5]) }
        }
        XCTAssertEqual(output, input)
        var buffer = input
        try buffer.withUnsafeMutableBufferPointer { try local.allgather($0, counts: [5]) }
        XCTAssertEqual(buffer, input)
        var maxima = [1.5, -2]
        try local.allreduceMax(&maxima)
        XCTAssertEqual(maxima, [1.5, -2])
    }

    func testEvenBlocksSplitAnyCount() {
        final class FakeGroup: Communicator {
            let size: Int
            init(size: Int) { self.size = size }
            var rank: Int { 0 }
            var hostName: String { "test" }
            func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
            func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
            func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
            func reduceScatterSum(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                                  counts: [Int]) throws {}
            func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
            func alltoall(_ send: UnsafeRawBufferPointer, _ receive: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {}
            func allgather(_ buffer: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {}
            func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
            func allGather(_ value: UInt64) throws -> [UInt64] { [value] }
            func barrier() throws {}
            func abort(exitCode: Int32) -> Never { fatalError() }
        }
        XCTAssertEqual(FakeGroup(size: 4).evenBlocks(10), [3, 3, 2, 2])
        XCTAssertEqual(FakeGroup(size: 3).evenBlocks(2), [1, 1, 0])
        for size in 1...7 {
            for count in [0, 1, 5, 652_824] {
                let blocks = FakeGroup(size: size).evenBlocks(count)
                XCTAssertEqual(blocks.reduce(0, +), count)
                XCTAssertLessThanOrEqual(blocks.max()! - blocks.min()!, 1)
            }
        }
    }

    func testCollectiveCheckPassesOnOneRank() throws {
        let check = CollectiveCheck(LocalCommunicator())
        for count in [1, 7, 1000] {
            let results = try check.verify(count: count)
            XCTAssertEqual(results.count, 8)
            for r in results { XCTAssertTrue(r.passed, "\(r.name): \(r.detail)") }
        }
        let timings = try check.time(sizes: [10, 1000], repeats: 3)
        XCTAssertEqual(timings.map(\.operation), ["allreduce", "reduce-scatter + allgather", "allreduce",
                                                  "reduce-scatter + allgather"])
        XCTAssertTrue(timings.allSatisfy { $0.seconds >= 0 })
    }
}
