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
///
/// When ranks drop unreadable images from their blocks (`--skip-bad-images`),
/// the plan takes the blocks' actual sizes (`keeping(shardSizes:)`).
public struct ShardPlan: Equatable, Sendable {
    public let sampleCount: Int
    public let worldSize: Int
    public let globalBatch: Int
    public let seed: UInt64
    /// Each rank's shard size, when they are not the even blocks.
    public let explicitShardSizes: [Int]?
    /// Block shuffling (`--shuffle-block`, for data read from disk as it
    /// trains): the samples form blocks of this many consecutive ones; the
    /// seeded permutation is one of blocks, and each epoch a rank walks its
    /// blocks in a random order, shuffling the samples within windows of
    /// `shuffleWindow` blocks. Reads stay sequential within a block.
    public let blockSize: Int?
    /// Blocks per shuffle window.
    public static let shuffleWindow = 16

    public init(sampleCount: Int, worldSize: Int, globalBatch: Int, seed: UInt64, blockSize: Int? = nil) {
        precondition(worldSize >= 1 && globalBatch >= worldSize && sampleCount >= 0,
                     "global batch \(globalBatch) must be at least the world size \(worldSize)")
        precondition(blockSize == nil || blockSize! >= 1, "a block holds at least one sample")
        self.sampleCount = sampleCount
        self.worldSize = worldSize
        self.globalBatch = globalBatch
        self.seed = seed
        self.blockSize = blockSize
        if let blockSize {
            // Rank r takes a contiguous run of the permuted blocks: its shard size is their samples.
            let blocks = RandomStream(seed: seed, domain: .dataPermutation).permutation((sampleCount + blockSize - 1) / blockSize)
            explicitShardSizes = (0..<worldSize).map { r in
                Self.block(count: blocks.count, rank: r, size: worldSize).reduce(0) { total, i in
                    total + min(blockSize, sampleCount - blocks[i] * blockSize)
                }
            }
        } else {
            explicitShardSizes = nil
        }
    }

    private init(_ plan: ShardPlan, shardSizes: [Int]) {
        precondition(shardSizes.count == plan.worldSize && shardSizes.allSatisfy { $0 >= 0 })
        sampleCount = shardSizes.reduce(0, +)
        worldSize = plan.worldSize
        globalBatch = plan.globalBatch
        seed = plan.seed
        explicitShardSizes = shardSizes
        blockSize = nil
    }

    /// This plan after each rank r kept `shardSizes[r]` of its block's samples.
    public func keeping(shardSizes: [Int]) -> ShardPlan {
        shardSizes == (0..<worldSize).map(shardSize) ? self : ShardPlan(self, shardSizes: shardSizes)
    }

    /// Rank r's contiguous block of positions [⌊rN/size⌋, ⌊(r+1)N/size⌋).
    public static func block(count: Int, rank: Int, size: Int) -> Range<Int> {
        (rank * count / size) ..< ((rank + 1) * count / size)
    }

    /// Sample indices (into the full training set) that `rank` keeps.
    public func shardIndices(rank: Int) -> [Int] {
        if let blockSize {
            let blocks = RandomStream(seed: seed, domain: .dataPermutation).permutation((sampleCount + blockSize - 1) / blockSize)
            return Self.block(count: blocks.count, rank: rank, size: worldSize).flatMap { i in
                (blocks[i] * blockSize) ..< min((blocks[i] + 1) * blockSize, sampleCount)
            }
        }
        precondition(explicitShardSizes == nil, "a plan with explicit shard sizes has no blocks to index")
        let permutation = RandomStream(seed: seed, domain: .dataPermutation).permutation(sampleCount)
        return Array(permutation[Self.block(count: sampleCount, rank: rank, size: worldSize)])
    }

    public func shardSize(rank: Int) -> Int {
        if let explicitShardSizes { return explicitShardSizes[rank] }
        return Self.block(count: sampleCount, rank: rank, size: worldSize).count
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
        let stream = RandomStream(seed: seed, domain: .epochShuffle, UInt32(epoch), UInt32(rank))
        guard let blockSize else { return stream.permutation(shardSize(rank: rank)) }
        // The shard's blocks (positions [b·B, (b+1)·B) in it, the last maybe short) in a random order,
        // then the positions of each window of blocks shuffled.
        let n = shardSize(rank: rank)
        let blocks = stream.permutation((n + blockSize - 1) / blockSize)
        var order: [Int] = []
        order.reserveCapacity(n)
        var window = 0
        while window * Self.shuffleWindow < blocks.count {
            let chosen = blocks[(window * Self.shuffleWindow) ..< min((window + 1) * Self.shuffleWindow, blocks.count)]
            let positions = chosen.flatMap { b in (b * blockSize) ..< min((b + 1) * blockSize, n) }
            let shuffle = RandomStream(seed: seed &+ UInt64(window + 1) &* 0x9E37_79B9_7F4A_7C15, domain: .epochShuffle,
                                       UInt32(epoch), UInt32(rank) | 1 << 31).permutation(positions.count)
            order += shuffle.map { positions[$0] }
            window += 1
        }
        return order
    }
}

/// This rank's training data: its shard of the training set under `plan`
/// (and no other rank's images) and the whole test set.
public struct ShardedData: Sendable {
    public let plan: ShardPlan
    public let shard: ImageSet
    public let test: ImageSet
    public let shape: ImageShape
    public let classNames: [String]?
    public let testIsHeldOut: Bool
    public let trainSource: String
    /// Each rank's private bytes of data (shard and test set), and its
    /// cores, for the start-up header; whether the values are mapped.
    public var dataMemory: [Int] = []
    public var placements: [String] = []
    public var mapped = false

    public init(plan: ShardPlan, shard: ImageSet, test: ImageSet, shape: ImageShape, classNames: [String]?,
                testIsHeldOut: Bool, trainSource: String) {
        self.plan = plan
        self.shard = shard
        self.test = test
        self.shape = shape
        self.classNames = classNames
        self.testIsHeldOut = testIsHeldOut
        self.trainSource = trainSource
    }

    /// Rank `rank`'s share of fully loaded splits.
    public init(_ data: DataSplits, batchSize: Int, seed: UInt64, rank: Int, worldSize: Int) {
        let plan = ShardPlan(sampleCount: data.train.count, worldSize: worldSize, globalBatch: batchSize, seed: seed)
        self.init(plan: plan, shard: data.train.selecting(plan.shardIndices(rank: rank)), test: data.test,
                  shape: data.train.shape, classNames: data.classNames, testIsHeldOut: data.testIsHeldOut,
                  trainSource: data.train.source)
    }
}
