import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Figures over a whole image set, exact and distributed (every rank
/// evaluates its contiguous block, sums are allreduced). Per sample, in
/// nats, unless named otherwise.
public struct EvaluationResult: Equatable, Sendable {
    /// The objective's reported terms (`ELBOTerms.reported`), per sample.
    public var terms: [Double]
    /// −ELBO = reconstruction + KL (β = 1 whatever the training β).
    public var loss: Double
    /// −ELBO / (D · ln 2): an upper bound on the code length of the data in
    /// bits per dimension (per sub-pixel), where the likelihood is a discrete
    /// distribution over the data's values (discrete likelihoods on integer
    /// levels, Bernoulli on 0/1 data); nil otherwise (a density, or the
    /// Bernoulli cross-entropy of gray levels, is not a code length).
    public var bitsPerDimension: Double?
    public var samples: Int
    /// KL per latent dimension (mean per sample): which dimensions carry information.
    public var klPerDimension: [Double]
    /// Latent dimensions whose posterior mean varies over the images,
    /// Cov_x(E_q[z_j]) > 0.01 (Burda et al. 2016).
    public var activeUnits: Int
    /// K, −log p(x) estimated with K importance samples, and in bits/dim
    /// (where that is a code length), when that bound was computed.
    public var importanceSamples: Int?
    public var importanceWeightedNLL: Double?
    public var importanceWeightedBitsPerDim: Double?
    /// Held-out users' ranking metrics (`--heldout-users`): the model's and
    /// the popularity ranking's, when the run has held-out users.
    public var ranking: (model: RankingMetrics, popularity: RankingMetrics)?

    public static func == (a: EvaluationResult, b: EvaluationResult) -> Bool {
        a.terms == b.terms && a.loss == b.loss && a.bitsPerDimension == b.bitsPerDimension && a.samples == b.samples
            && a.klPerDimension == b.klPerDimension && a.activeUnits == b.activeUnits
            && a.importanceSamples == b.importanceSamples && a.importanceWeightedNLL == b.importanceWeightedNLL
            && a.importanceWeightedBitsPerDim == b.importanceWeightedBitsPerDim
            && a.ranking?.model == b.ranking?.model && a.ranking?.popularity == b.ranking?.popularity
    }

    /// A reported term by its key ("reconstruction", "kl").
    public subscript(term key: String) -> Double {
        guard let i = ELBOTerms.reported.firstIndex(where: { $0.key == key }) else {
            preconditionFailure("no objective term \(key)")
        }
        return terms[i]
    }
}

extension EvaluationResult: Encodable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// One object: the terms by name beside the other fields (`evaluate --json`).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (name, value) in zip(ELBOTerms.reported, terms) { try c.encode(value, forKey: Key(name.key)) }
        try c.encode(loss, forKey: Key("loss"))
        try c.encodeIfPresent(bitsPerDimension, forKey: Key("bitsPerDimension"))
        try c.encode(samples, forKey: Key("samples"))
        try c.encode(klPerDimension, forKey: Key("klPerDimension"))
        try c.encode(activeUnits, forKey: Key("activeUnits"))
        try c.encodeIfPresent(importanceSamples, forKey: Key("importanceSamples"))
        try c.encodeIfPresent(importanceWeightedNLL, forKey: Key("importanceWeightedNLL"))
        try c.encodeIfPresent(importanceWeightedBitsPerDim, forKey: Key("importanceWeightedBitsPerDim"))
    }
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
                                batchSize: Int, communicator: Communicator, exact: Bool = false) throws -> EvaluationResult {
        let z = model.latentSize
        let t = ELBOTerms.reported.count
        let elboNoise = RandomStream(seed: seed, domain: .evaluationNoise)
        let iwNoise = RandomStream(seed: seed, domain: .evaluationNoise, 1)
        // terms (T) | −log p(x) estimate | KL_j (Z) | Σ μ_j (Z) | Σ μ_j² (Z)
        let width = t + 1 + 3 * z
        var sums = [Double](repeating: 0, count: width)
        let (iw, klOffset, meanOffset, squareOffset) = (t, t + 1, t + 1 + z, t + 1 + 2 * z)
        // Adds the sums of images [start, end) (one forward pass) to `sums`.
        func accumulate(_ start: Int, _ end: Int, into sums: inout [Double]) {
            let b = end - start
            let batch = model.batch(of: images, start..<end)
            let noise = Tensor(normalsFrom: elboNoise, shape: [b, z], offset: start * z)
            let terms = model.terms(batch, noise: noise)
            for (i, value) in terms.elbo.reportedValues.enumerated() { sums[i] += Double(value) }
            let klPerDimension = terms.klPerDimension.scalars
            let means = terms.posteriorMean.scalars
            for j in 0..<z {
                sums[klOffset + j] += Double(klPerDimension[j])
                for i in 0..<b {
                    let m = Double(means[i * z + j])
                    sums[meanOffset + j] += m
                    sums[squareOffset + j] += m * m
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
                sums[iw] -= model.importanceWeightedEstimate(batch, noise: noise).logLikelihood.reduce(0, +)
            }
        }
        if exact {
            // The same sums at any number of ranks (--reproducible): the test set in fixed chunks of
            // `batchSize`, dealt to ranks in blocks; each chunk's sums in its own row of a matrix that
            // a sum-allreduce fills in (x + 0 is exact); every rank adds the rows in chunk order.
            let chunks = (images.count + batchSize - 1) / max(batchSize, 1)
            var rows = [Double](repeating: 0, count: chunks * width)
            for c in ShardPlan.block(count: chunks, rank: communicator.rank, size: communicator.size) {
                var row = [Double](repeating: 0, count: width)
                accumulate(c * batchSize, min((c + 1) * batchSize, images.count), into: &row)
                rows.replaceSubrange(c * width ..< (c + 1) * width, with: row)
            }
            try communicator.allreduceSum(&rows)
            for c in 0..<chunks {
                for j in 0..<width { sums[j] += rows[c * width + j] }
            }
        } else {
            let block = ShardPlan.block(count: images.count, rank: communicator.rank, size: communicator.size)
            var start = block.lowerBound
            while start < block.upperBound {
                let end = min(start + batchSize, block.upperBound)
                accumulate(start, end, into: &sums)
                start = end
            }
            try communicator.allreduceSum(&sums)
        }
        let n = Double(max(images.count, 1))
        let d = Double(images.shape.size)
        let terms = (0..<t).map { sums[$0] / n }
        let loss = terms.reduce(0, +)
        let active = (0..<z).filter { j in
            let mean = sums[meanOffset + j] / n
            return sums[squareOffset + j] / n - mean * mean > 0.01
        }.count
        let codeLength = model.likelihood.isCodeLength(for: images.description)
        var result = EvaluationResult(
            terms: terms, loss: loss, bitsPerDimension: codeLength ? loss / (d * M_LN2) : nil, samples: images.count,
            klPerDimension: (0..<z).map { sums[klOffset + $0] / n }, activeUnits: active)
        if k > 0 {
            result.importanceSamples = k
            result.importanceWeightedNLL = sums[iw] / n
            result.importanceWeightedBitsPerDim = codeLength ? sums[iw] / n / (d * M_LN2) : nil
        }
        return result
    }
}
