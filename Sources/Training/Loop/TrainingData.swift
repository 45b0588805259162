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
    /// K: the classes of a conditional model (0: unconditional).
    let classes: Int

    init(_ data: ShardedData, seed: UInt64, rank: Int, classes: Int) {
        plan = data.plan
        shard = data.shard
        test = data.test
        self.rank = rank
        self.seed = seed
        self.classes = classes
    }

    var stepsPerEpoch: Int { plan.stepsPerEpoch }

    /// The order in which this rank visits its shard in `epoch`.
    func order(epoch: Int) -> [Int] { plan.epochOrder(epoch: epoch, rank: rank) }

    /// x (b, D): this rank's images for step `stepInEpoch` of an epoch (possibly none).
    func batch(stepInEpoch: Int, order: [Int]) -> Tensor {
        shard.batch(indices(stepInEpoch: stepInEpoch, order: order))
    }

    func indices(stepInEpoch: Int, order: [Int]) -> [Int] {
        plan.localRange(step: stepInEpoch, rank: rank).map { order[$0] }
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
