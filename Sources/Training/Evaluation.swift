import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Figures over a whole image set, exact and distributed (every rank
/// evaluates its contiguous block, sums are allreduced). Per sample, in
/// nats, unless named otherwise.
public struct EvaluationResult: Codable, Equatable, Sendable {
    public var reconstruction: Double
    public var kl: Double
    /// −ELBO = reconstruction + KL (β = 1 whatever the training β).
    public var loss: Double
    /// −ELBO / (D · ln 2).
    public var bitsPerDimension: Double
    public var samples: Int
    /// KL per latent dimension (mean per sample): which dimensions carry information.
    public var klPerDimension: [Double]
    /// Latent dimensions whose posterior mean varies over the images,
    /// Cov_x(E_q[z_j]) > 0.01 (Burda et al. 2016).
    public var activeUnits: Int
    /// K, −log p(x) estimated with K importance samples, and in bits/dim,
    /// when that bound was computed.
    public var importanceSamples: Int?
    public var importanceWeightedNLL: Double?
    public var importanceWeightedBitsPerDim: Double?
}

extension Inference {
    /// −ELBO of every image (noise for image i is block i of the stream
    /// (seed, .evaluationNoise): the same whichever rank holds the image, so
    /// the figure does not depend on the number of ranks, and the same every
    /// epoch for a fixed model), the KL per dimension and the active units;
    /// with K > 0 also the importance-weighted estimate of −log p(x), the
    /// noise for image i, sample k being block i·K + k of (seed,
    /// .evaluationNoise, 1).
    public static func evaluate(_ model: LoadedModel, images: ImageSet, seed: UInt64, importanceSamples k: Int = 0,
                                batchSize: Int, communicator: Communicator) throws -> EvaluationResult {
        let z = model.latentSize
        let block = ShardPlan.block(count: images.count, rank: communicator.rank, size: communicator.size)
        let elboNoise = RandomStream(seed: seed, domain: .evaluationNoise)
        let iwNoise = RandomStream(seed: seed, domain: .evaluationNoise, 1)
        // reconstruction, KL, −log p(x) estimate | KL_j (Z) | Σ μ_j (Z) | Σ μ_j² (Z)
        var sums = [Double](repeating: 0, count: 3 + 3 * z)
        var start = block.lowerBound
        while start < block.upperBound {
            let end = min(start + batchSize, block.upperBound)
            let b = end - start
            let x = images.batch(start..<end)
            let q = model.encode(x)
            let noise = Tensor(normalsFrom: elboNoise, shape: [b, z], offset: start * z)
            let sample = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: noise)
            sums[0] += Double(model.likelihood.negativeLogLikelihood(x, given: model.decode(sample)))
            let klPerDimension = gaussianKLPerDimension(mean: q.mean, logVariance: q.logVariance).scalars
            sums[1] += Double(klPerDimension.reduce(0, +))
            for j in 0..<z {
                sums[3 + j] += Double(klPerDimension[j])
                for i in 0..<b {
                    let m = Double(q.mean.scalars[i * z + j])
                    sums[3 + z + j] += m
                    sums[3 + 2 * z + j] += m * m
                }
            }
            if k > 0 {
                // K·b normals at once, image-major: image i's samples are contiguous.
                let normals = iwNoise.normals(count: b * k * z, offset: start * k * z)
                let noise = (0..<k).map { kk in
                    Tensor(shape: [b, z], unsafeUninitialized: { out in
                        for i in 0..<b { for j in 0..<z { out[i * z + j] = normals[(i * k + kk) * z + j] } }
                    })
                }
                sums[2] -= model.importanceWeightedEstimate(x, noise: noise).logLikelihood.reduce(0, +)
            }
            start = end
        }
        try communicator.allreduceSum(&sums)
        let n = Double(max(images.count, 1))
        let d = Double(images.shape.size)
        let reconstruction = sums[0] / n, kl = sums[1] / n
        let active = (0..<z).filter { j in
            let mean = sums[3 + z + j] / n
            return sums[3 + 2 * z + j] / n - mean * mean > 0.01
        }.count
        var result = EvaluationResult(
            reconstruction: reconstruction, kl: kl, loss: reconstruction + kl,
            bitsPerDimension: (reconstruction + kl) / (d * M_LN2), samples: images.count,
            klPerDimension: (0..<z).map { sums[3 + $0] / n }, activeUnits: active)
        if k > 0 {
            result.importanceSamples = k
            result.importanceWeightedNLL = sums[2] / n
            result.importanceWeightedBitsPerDim = sums[2] / n / (d * M_LN2)
        }
        return result
    }
}
