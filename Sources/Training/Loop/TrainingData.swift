import Datasets
import TensorCore
import VAEModel

/// This rank's view of the training data: its shard of the training set
/// (see `ShardPlan`), the test set, and the step's batch and noise.
/// Legend: b local batch, D data dimensions, Z latent.
struct TrainingData {
    let plan: ShardPlan
    let shard: ImageSet
    let test: ImageSet
    let rank: Int
    let seed: UInt64
    /// K: the classes of a conditional model (0: unconditional).
    let classes: Int
    /// `--reproducible`: every rank holds the whole training set (`plan` is
    /// the plan of one rank, so the batches are global), each step's batch is
    /// cut into `microShards` fixed pieces, and this rank computes pieces
    /// `localShards`.
    let microShards: Int?
    let worldSize: Int

    init(_ data: ShardedData, seed: UInt64, rank: Int, classes: Int, microShards: Int? = nil, worldSize: Int = 1) {
        plan = data.plan
        shard = data.shard
        test = data.test
        self.rank = rank
        self.seed = seed
        self.classes = classes
        self.microShards = microShards
        self.worldSize = worldSize
        precondition(microShards == nil || plan.worldSize == 1, "reproducible batches come from the plan of one rank")
    }

    var stepsPerEpoch: Int { plan.stepsPerEpoch }

    /// The rank whose part of the plan this rank walks (rank 0's, the whole
    /// training set, when the batches are global).
    var planRank: Int { microShards == nil ? rank : 0 }

    /// The order in which this rank visits its shard in `epoch`.
    func order(epoch: Int) -> [Int] { plan.epochOrder(epoch: epoch, rank: planRank) }

    /// `--reproducible`: micro-shard v of a global batch of `count` images
    /// (positions into `indices(stepInEpoch:order:)`), and this rank's micro-shards.
    func microShard(_ v: Int, of count: Int) -> Range<Int> {
        ShardPlan.block(count: count, rank: v, size: microShards!)
    }

    var localMicroShards: Range<Int> {
        let perRank = microShards! / worldSize
        return rank * perRank ..< (rank + 1) * perRank
    }

    /// ε (b, Z) of these images in step `step` (0-based), each row keyed by
    /// (seed, image, step): the same noise whichever rank draws it.
    func sampleNoise(_ indices: [Int], latentSize z: Int, step: Int) -> Tensor {
        var scalars = [Float]()
        scalars.reserveCapacity(indices.count * z)
        for i in indices {
            scalars += RandomStream(seed: seed, domain: .sampleNoise, UInt32(truncatingIfNeeded: i),
                                    UInt32(truncatingIfNeeded: step)).normals(count: z)
        }
        return Tensor(shape: [indices.count, z], scalars: scalars)
    }

    /// These shard images as the objective takes them: the encoder's input,
    /// the likelihood's targets in its representation (the input itself
    /// unless it scores integer levels), and a conditional model's labels.
    func batch(_ indices: [Int], likelihood: Likelihood, inputDropout: Double? = nil, step: Int = 0) -> DataBatch {
        let clean = shard.batch(indices)
        var input = clean
        if let p = inputDropout, p > 0 {
            // Mult-VAE's dropout on the (normalised) input: zero with probability p, the rest scaled by 1/(1 − p).
            let d = shard.shape.size, keep = Float(1 - p), scale = 1 / Float(1 - p)
            let seed = self.seed ^ (UInt64(planRank) &* 0x9E37_79B9_7F4A_7C15)
            // Value j of a row meets uniform j of the row's stream. A +0 stays +0 either way, so a
            // mostly-zero row (interactions, counts) draws only its nonzeros' uniforms, by random
            // access into the counter-based stream: the same numbers, a fraction of the work.
            var scalars = clean.scalars
            var positions = [Int64](), uniforms = [Float]()
            scalars.withUnsafeMutableBufferPointer { x in
                for (row, i) in indices.enumerated() {
                    let stream = RandomStream(seed: seed, domain: .inputDropout, UInt32(truncatingIfNeeded: i),
                                              UInt32(truncatingIfNeeded: step))
                    let values = UnsafeMutableBufferPointer(rebasing: x[row * d ..< (row + 1) * d])
                    // Sparse: fewer than a quarter of the row nonzero.
                    if nonzeroPositions(of: UnsafeBufferPointer(values), limit: (d + 3) / 4 - 1, into: &positions) {
                        stream.uniforms(at: positions, into: &uniforms)
                        for (k, j) in positions.enumerated() {
                            values[Int(j)] = uniforms[k] < keep ? values[Int(j)] * scale : 0
                        }
                    } else {
                        let u = stream.uniforms(count: d)
                        for j in 0..<d { values[j] = u[j] < keep ? values[j] * scale : 0 }
                    }
                }
            }
            input = Tensor(shape: clean.shape, scalars: scalars)
        }
        // The likelihood scores the data (never the dropped-out input).
        return DataBatch(input: input,
                         target: likelihood.targets == .levels ? shard.batch(indices, as: .levels) : clean,
                         condition: condition(of: indices), mask: shard.mask(indices))
    }

    /// Block-shuffled data in a mapped file (`--shuffle-block`): asks the
    /// kernel to read ahead the blocks that the step a window ahead starts
    /// to use (`madvise(WILLNEED)`, asynchronous), so that the step does
    /// not wait for the disk when the disk keeps up.
    func prefetch(stepInEpoch: Int, order: [Int]) {
        guard let blockSize = plan.blockSize, shard.values.isMapped else { return }
        let b = max(plan.localBatch(rank: planRank), 1)
        let ahead = stepInEpoch + (ShardPlan.shuffleWindow * blockSize + b - 1) / b
        func blocks(_ step: Int) -> Set<Int> {
            Set(plan.localRange(step: step, rank: planRank).map { order[$0] / blockSize })
        }
        let wanted = blocks(ahead)
        guard !wanted.isEmpty else { return }
        let known = ahead > 0 ? blocks(ahead - 1) : []
        let n = shard.count
        for block in wanted.subtracting(known) {
            shard.values.prefetch(rows: (block * blockSize) ..< min((block + 1) * blockSize, n), width: shard.shape.size)
        }
    }

    func indices(stepInEpoch: Int, order: [Int]) -> [Int] {
        plan.localRange(step: stepInEpoch, rank: planRank).map { order[$0] }
    }

    /// (b, K): the one-hot labels of these shard images for a conditional
    /// model; (b, 0) otherwise.
    func condition(of indices: [Int]) -> Tensor {
        guard classes > 0, let labels = shard.labels else { return Tensor(zeros: [indices.count, 0]) }
        return Tensor(oneHot: indices.map { labels[$0] }, classes: classes)
    }

    /// ε (b, Z): the reparameterisation noise of global step `step`
    /// (0-based), keyed by (seed, rank, step).
    func noise(count: Int, latentSize: Int, step: Int) -> Tensor {
        Tensor(normalsFrom: RandomStream(seed: seed, domain: .trainingNoise, UInt32(rank), UInt32(truncatingIfNeeded: step)),
               shape: [count, latentSize])
    }
}
