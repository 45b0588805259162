import TensorCore

/// How the training set is split over ranks and walked through in batches.
///
/// A seeded global permutation of the N samples is cut into `size`
/// contiguous blocks; rank r keeps block r (block sizes differ by at most
/// one). Each epoch, a rank visits its block in the order of a permutation
/// keyed by (seed, epoch, rank).
///
/// The global batch B is split over ranks (the first B mod size ranks take
/// one more). Every rank runs the same number of steps per epoch, the most
/// any rank needs; a rank that runs out early contributes smaller and then
/// empty batches. Each step reduces gradient *sums* and the sample count
/// together, so the update is the exact mean over the samples actually in
/// the step: nothing is padded or dropped, and no rank waits for another.
public struct ShardPlan: Equatable, Sendable {
    public let sampleCount: Int
    public let worldSize: Int
    public let globalBatch: Int
    public let seed: UInt64

    public init(sampleCount: Int, worldSize: Int, globalBatch: Int, seed: UInt64) {
        precondition(worldSize >= 1 && globalBatch >= worldSize && sampleCount >= 0,
                     "global batch \(globalBatch) must be at least the world size \(worldSize)")
        self.sampleCount = sampleCount
        self.worldSize = worldSize
        self.globalBatch = globalBatch
        self.seed = seed
    }

    /// Rank r's contiguous block of positions [⌊rN/size⌋, ⌊(r+1)N/size⌋).
    public static func block(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size) ..< ((rank + 1) * count / size)
    }

    /// Sample indices (into the full training set) that `rank` keeps.
    public func shardIndices(rank: Int) -> [Int] {
        let permutation = RandomStream(seed: seed, domain: .dataPermutation).permutation(sampleCount)
        return Array(permutation[Self.block(count: sampleCount, rank: rank, size: worldSize)])
    }

    public func shardSize(rank: Int) -> Int {
        Self.block(count: sampleCount, rank: rank, size: worldSize).count
    }

    /// Rank r's share of the global batch.
    public func localBatch(rank: Int) -> Int {
        globalBatch / worldSize + (rank < globalBatch % worldSize ? 1 : 0)
    }

    /// Steps every rank runs per epoch: the most any rank needs.
    public var stepsPerEpoch: Int {
        (0..<worldSize).map { r in
            let (n, b) = (shardSize(rank: r), localBatch(rank: r))
            return (n + b - 1) / b
        }.max() ?? 0
    }

    /// Positions within rank r's shard for step `step` of an epoch (possibly empty).
    public func localRange(step: Int, rank: Int) -> Range<Int> {
        let (n, b) = (shardSize(rank: rank), localBatch(rank: rank))
        return min(step * b, n) ..< min((step + 1) * b, n)
    }

    /// The order in which rank r visits its shard in `epoch` (1-based epochs).
    public func epochOrder(epoch: Int, rank: Int) -> [Int] {
        RandomStream(seed: seed, domain: .epochShuffle, UInt32(epoch), UInt32(rank))
            .permutation(shardSize(rank: rank))
    }
}
