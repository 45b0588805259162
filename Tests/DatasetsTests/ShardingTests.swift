import XCTest
@testable import Datasets

final class ShardingTests: XCTestCase {
    /// Every sample is visited exactly once per epoch, over all ranks and
    /// steps, for sizes that do not divide evenly; every rank runs the same
    /// number of steps; no step's global batch exceeds the configured one.
    func testEveryEpochCoversEachSampleOnce() {
        for (n, size, batch) in [(997, 4, 50), (60000, 3, 128), (10, 4, 4), (7, 2, 128), (1000, 1, 128), (5, 4, 7)] {
            let plan = ShardPlan(sampleCount: n, worldSize: size, globalBatch: batch, seed: 11)
            let shards = (0..<size).map { plan.shardIndices(rank: $0) }
            XCTAssertEqual(shards.flatMap { $0 }.sorted(), Array(0..<n), "shards partition the data (n \(n), size \(size))")
            let sizes = shards.map(\.count)
            XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "shard sizes differ by at most one")
            XCTAssertEqual((0..<size).map { plan.localBatch(rank: $0) }.reduce(0, +), batch)
            for epoch in 1...2 {
                var seen: [Int] = []
                let orders = (0..<size).map { plan.epochOrder(epoch: epoch, rank: $0) }
                for step in 0..<plan.stepsPerEpoch {
                    var stepTotal = 0
                    for rank in 0..<size {
                        let order = orders[rank]
                        let range = plan.localRange(step: step, rank: rank)
                        stepTotal += range.count
                        seen += range.map { shards[rank][order[$0]] }
                    }
                    XCTAssertLessThanOrEqual(stepTotal, batch)
                    XCTAssertGreaterThan(stepTotal, 0, "no step is empty on every rank")
                }
                XCTAssertEqual(seen.sorted(), Array(0..<n), "epoch \(epoch) visits each sample once (n \(n), size \(size))")
                XCTAssertEqual(plan.localRange(step: plan.stepsPerEpoch, rank: 0).count, 0)
            }
        }
    }

    func testOneRankMatchesPyTorchsStepCount() {
        // 60000 samples at batch 128: 468 full steps and a last one of 96.
        let plan = ShardPlan(sampleCount: 60000, worldSize: 1, globalBatch: 128, seed: 1)
        XCTAssertEqual(plan.stepsPerEpoch, 469)
        XCTAssertEqual(plan.localRange(step: 468, rank: 0).count, 96)
        let two = ShardPlan(sampleCount: 60000, worldSize: 2, globalBatch: 128, seed: 1)
        XCTAssertEqual(two.stepsPerEpoch, 469)
    }

    func testShufflesAreSeededAndDifferPerEpoch() {
        let plan = ShardPlan(sampleCount: 100, worldSize: 2, globalBatch: 10, seed: 3)
        XCTAssertEqual(plan.epochOrder(epoch: 1, rank: 0), plan.epochOrder(epoch: 1, rank: 0))
        XCTAssertNotEqual(plan.epochOrder(epoch: 1, rank: 0), plan.epochOrder(epoch: 2, rank: 0))
        XCTAssertNotEqual(plan.shardIndices(rank: 0),
                          ShardPlan(sampleCount: 100, worldSize: 2, globalBatch: 10, seed: 4).shardIndices(rank: 0))
    }
}
