import _Differentiation
import Collectives
import Datasets
import TensorCore
import VAEModel

/// Test-set figures, exact over the whole test set (every rank evaluates its
/// block, sums are allreduced). Per sample, in nats, unless named otherwise.
public struct EvaluationResult: Codable, Equatable, Sendable {
    public var reconstruction: Double
    public var kl: Double
    /// −ELBO = reconstruction + KL (β = 1 whatever the training β).
    public var loss: Double
    /// −ELBO / (D · ln 2).
    public var bitsPerDimension: Double
    public var samples: Int

    init(reconstructionSum: Double, klSum: Double, samples: Int, dimensions: Int) {
        let n = Double(max(samples, 1))
        reconstruction = reconstructionSum / n
        kl = klSum / n
        loss = reconstruction + kl
        bitsPerDimension = loss / (Double(dimensions) * 0.693_147_180_559_945_3)
        self.samples = samples
    }
}

/// One rank's contiguous block of the test set and how to evaluate on it.
///
/// The reparameterisation noise for test sample i is element block i of the
/// stream (seed, .evaluationNoise): it depends on the sample, not on which
/// rank holds it or how many ranks there are, so the test loss is the same
/// for any world size (up to the order of floating-point sums), and the same
/// from epoch to epoch for a fixed model.
struct TestShard {
    let images: ImageSet
    /// Global index of `images`' first sample.
    let firstIndex: Int
    let totalCount: Int

    init(testSet: ImageSet, rank: Int, size: Int) {
        let block = ShardPlan.block(count: testSet.count, rank: rank, size: size)
        images = testSet.selecting(Array(block))
        firstIndex = block.lowerBound
        totalCount = testSet.count
    }

    func evaluate<Model: VariationalAutoencoder>(
        _ model: Model, likelihood: Likelihood, seed: UInt64, batchSize: Int,
        communicator: Communicator
    ) throws -> EvaluationResult {
        let noiseStream = RandomStream(seed: seed, domain: .evaluationNoise)
        let z = model.latentSize
        var sums = [Double](repeating: 0, count: 3)  // reconstruction, KL, samples
        var start = 0
        while start < images.count {
            let end = min(start + batchSize, images.count)
            let x = images.batch(start..<end)
            let noise = Tensor(normalsFrom: noiseStream, shape: [end - start, z],
                               offset: (firstIndex + start) * z)
            let terms = negativeELBO(model, x: x, noise: noise, likelihood: likelihood)
            sums[0] += Double(terms.reconstruction)
            sums[1] += Double(terms.kl)
            sums[2] += Double(end - start)
            start = end
        }
        try communicator.allreduceSum(&sums)
        return EvaluationResult(reconstructionSum: sums[0], klSum: sums[1], samples: Int(sums[2]),
                                dimensions: images.shape.size)
    }
}
