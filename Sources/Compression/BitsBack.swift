import TensorCore
import VAEModel

/// The precisions of a bits-back code, recorded in every file.
public struct CodecPrecisions: Codable, Equatable, Sendable {
    /// P: each latent dimension is cut into 2^P buckets of equal prior mass.
    public var latent: Int
    /// Bits of the quantised posterior's and likelihood's frequencies.
    public var posterior: Int
    public var likelihood: Int

    /// BB-ANS's settings (Townsend et al. 2019 use 8 latent bits and 14–16 for the rest).
    public static let defaults = CodecPrecisions(latent: 8, posterior: 16, likelihood: 16)

    public init(latent: Int, posterior: Int, likelihood: Int) {
        self.latent = latent
        self.posterior = posterior
        self.likelihood = likelihood
    }

    /// The rules of the values (`InvalidSetting` names the field); `levels`
    /// is K, which the likelihood's precision must leave a frequency for.
    public func validate(levels: Int) throws {
        // Every symbol needs a frequency of at least 1: 2^precision must exceed the symbols.
        try InvalidSetting.check("latent_precision", latent, in: 1...16)
        try InvalidSetting.check("posterior_precision", posterior, in: latent + 1 ... 30)
        try InvalidSetting.check("likelihood_precision", likelihood, in: Self.bits(exceeding: levels) ... 30)
    }

    /// The fewest bits b with 2^b > n.
    static func bits(exceeding n: Int) -> Int {
        var bits = 1
        while 1 << bits <= n { bits += 1 }
        return bits
    }
}

/// Bits-back coding with ANS (BB-ANS; Townsend, Bird & Barber 2019) of
/// K-level samples under a trained VAE, one sample at a time onto a message.
///
/// Encoding a sample x:
/// 1. pop each latent dimension's bucket from the discretised posterior
///    q(z | x) (reading bits already in the message: the bits back);
/// 2. push x under p(x | z), z the buckets' centres, one dimension at a time;
/// 3. push the buckets under the prior: uniform over 2^P buckets of equal
///    prior mass.
/// Decoding runs the steps backwards in reverse order, and pushes the
/// posterior's buckets back, returning the message to what it was before x.
/// The net cost of x is −log p(x | z) − log p(z) + log q(z | x): the ELBO's
/// one-sample estimate, plus the quantisation's small overheads.
///
/// Everything that decides a frequency runs on `PortableModel` and
/// `PortableMath`, so decoding reproduces it on any machine.
public struct BitsBackCodec: Sendable {
    public let model: PortableModel
    public let likelihood: Likelihood
    /// K.
    public let levels: Int
    public let precisions: CodecPrecisions
    /// Inner bucket edges Φ⁻¹(k/2^P), k = 1…2^P−1, and bucket centres Φ⁻¹((k + ½)/2^P).
    let edges: [Double]
    let centres: [Float]

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// A likelihood that is not a distribution over integer levels.
        case notDiscrete(String)

        public var description: String {
            switch self {
            case .notDiscrete(let name):
                return "the \(name) likelihood is not a distribution over integer levels; bits-back coding needs a "
                    + "discrete one (discretized-logistic, beta-binomial, or bernoulli on 0/1 data)"
            }
        }
    }

    public init(model: PortableModel, likelihood: Likelihood, levels: Int, precisions: CodecPrecisions) throws {
        guard likelihood.isDiscrete else { throw Failure.notDiscrete(likelihood.name) }
        try precisions.validate(levels: levels)
        self.model = model
        self.likelihood = likelihood
        self.levels = levels
        self.precisions = precisions
        let buckets = 1 << precisions.latent
        edges = (1..<buckets).map { PortableMath.normalQuantile(Double($0) / Double(buckets)) }
        centres = (0..<buckets).map { Float(PortableMath.normalQuantile((Double($0) + 0.5) / Double(buckets))) }
    }

    /// The discretised posterior of each latent dimension, over the 2^P buckets.
    func posteriors(_ x: [Float]) -> [QuantizedDistribution] {
        let (mean, logVariance) = model.posterior(x)
        return (0..<model.latentSize).map { j in
            let mu = Double(mean[j]), inverseSigma = 1 / PortableMath.exp(0.5 * Double(logVariance[j]))
            var cdf = [0.0]
            for e in edges { cdf.append(PortableMath.normalCDF((e - mu) * inverseSigma)) }
            cdf.append(1)
            return QuantizedDistribution(cdf: cdf, precision: precisions.posterior)
        }
    }

    /// The likelihood of each data dimension given the latent buckets `z`.
    func likelihoods(_ z: [Int]) -> [QuantizedDistribution] {
        let planes = model.likelihoodParameters(z.map { centres[$0] })
        let p = planes.count
        return (0..<model.image.size).map { d in
            let parameters = (0..<p).map { Double(planes[$0][d]) }
            return QuantizedDistribution(cdf: likelihood.levelCDF(parameters, PortableMath.self)!, precision: precisions.likelihood)
        }
    }

    /// The encoder's input for levels (level/(K − 1), as training scales them).
    func scaled(_ levels: [Int]) -> [Float] {
        let scale = 1 / Float(self.levels - 1)
        return levels.map { Float($0) * scale }
    }

    /// Codes one sample (D levels) onto `message`.
    public func encode(_ x: [Int], onto message: inout ANSMessage) throws {
        precondition(x.count == model.image.size, "a sample of \(model.image.size) values")
        let q = posteriors(scaled(x))
        var z = [Int](repeating: 0, count: model.latentSize)
        for j in 0..<z.count { z[j] = try message.pop(q[j]) }
        let p = likelihoods(z)
        for d in stride(from: x.count - 1, through: 0, by: -1) { message.push(x[d], p[d]) }
        for j in stride(from: z.count - 1, through: 0, by: -1) {
            message.push(start: UInt32(z[j]), frequency: 1, precision: precisions.latent)
        }
    }

    /// Decodes the sample coded last on `message`.
    public func decode(from message: inout ANSMessage) throws -> [Int] {
        var z = [Int](repeating: 0, count: model.latentSize)
        for j in 0..<z.count {
            let bucket = message.peek(precision: precisions.latent)
            try message.pop(start: bucket, frequency: 1, precision: precisions.latent)
            z[j] = Int(bucket)
        }
        let p = likelihoods(z)
        var x = [Int](repeating: 0, count: model.image.size)
        for d in 0..<x.count { x[d] = try message.pop(p[d]) }
        let q = posteriors(scaled(x))
        for j in stride(from: z.count - 1, through: 0, by: -1) { message.push(z[j], q[j]) }
        return x
    }

    /// Seed words for a chain: enough for the first sample's posterior pops
    /// (each takes at most `posterior` bits), plus one. Pseudo-random
    /// (Philox, fixed key), counted in the file's total rate, and checked to
    /// come back when the chain is decoded.
    public var seedWordCount: Int { (model.latentSize * precisions.posterior + 31) / 32 + 1 }

    public func seedMessage(chain: Int) -> ANSMessage {
        let words = RandomStream(seed: 0x5641_455A, domain: .sampling, UInt32(truncatingIfNeeded: chain), 0xB175)
            .words(count: seedWordCount)
        return ANSMessage(head: ANSMessage.lowerBound, tail: words)
    }
}
