import Datasets
import TensorCore

/// This rank's view of the training data: its shard of the training set
/// (see `ShardPlan`), the test set, and the step's batch and noise.
/// Legend: b local batch, D data dimensions, Z latent.
struct TrainingData {
    let plan: ShardPlan
    let shard: ImageSet
    let test: ImageSet
    let rank: Int
    let seed: UInt64

    init(_ data: DataSplits, batchSize: Int, seed: UInt64, rank: Int, worldSize: Int) {
        plan = ShardPlan(sampleCount: data.train.count, worldSize: worldSize, globalBatch: batchSize, seed: seed)
        shard = data.train.selecting(plan.shardIndices(rank: rank))
        test = data.test
        self.rank = rank
        self.seed = seed
    }

    var stepsPerEpoch: Int { plan.stepsPerEpoch }

    /// The order in which this rank visits its shard in `epoch`.
    func order(epoch: Int) -> [Int] { plan.epochOrder(epoch: epoch, rank: rank) }

    /// x (b, D): this rank's images for step `stepInEpoch` of an epoch (possibly none).
    func batch(stepInEpoch: Int, order: [Int]) -> Tensor {
        shard.batch(plan.localRange(step: stepInEpoch, rank: rank).map { order[$0] })
    }

    /// ε (b, Z): the reparameterisation noise of global step `step`
    /// (0-based), keyed by (seed, rank, step).
    func noise(count: Int, latentSize: Int, step: Int) -> Tensor {
        Tensor(normalsFrom: RandomStream(seed: seed, domain: .trainingNoise, UInt32(rank), UInt32(truncatingIfNeeded: step)),
               shape: [count, latentSize])
    }
}
