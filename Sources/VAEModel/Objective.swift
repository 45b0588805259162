import _Differentiation
import Foundation
import TensorCore

/// The observation model p(x | z).
public enum Likelihood: Equatable, Sendable {
    /// Independent Bernoulli per dimension; the decoder emits logits; x in [0, 1].
    case bernoulli
    /// Independent Gaussian per dimension with a fixed variance (given as
    /// log σ²); the decoder emits the mean.
    case gaussian(logVariance: Float)
    /// Independent Gaussian with a per-dimension variance from a second
    /// decoder head (log σ², clamped to `learnedLogVarianceRange`).
    case gaussianLearned

    /// −log p(x | decoder output), summed over the batch and dimensions, in
    /// nats (Gaussian: the density's constant included).
    @differentiable(reverse, wrt: output)
    public func negativeLogLikelihood(_ x: Tensor, given output: DecoderOutput) -> Float {
        switch self {
        case .bernoulli:
            return bceWithLogits(logits: output.location, targets: x)
        case .gaussian(let logVariance):
            return gaussianNLL(mean: output.location, targets: x, logVariance: logVariance)
        case .gaussianLearned:
            return gaussianNLL(mean: output.location, logVariance: output.logVariance, targets: x)
        }
    }

    /// Whether the decoder needs a log-variance head.
    public var learnsVariance: Bool { self == .gaussianLearned }

    /// Whether the data must lie in [0, 1].
    public var needsUnitInterval: Bool { self == .bernoulli }
}

/// The two terms of the negative ELBO, each summed over the batch (nats).
public struct ELBOTerms: Differentiable {
    /// −E_q[log p(x | z)], one-sample estimate.
    public var reconstruction: Float
    /// KL(q(z | x) ‖ p(z)) in closed form, per latent dimension: (Z).
    public var klPerDimension: Tensor

    @differentiable(reverse)
    public init(reconstruction: Float, klPerDimension: Tensor) {
        self.reconstruction = reconstruction
        self.klPerDimension = klPerDimension
    }

    /// The whole KL term.
    public var kl: Float { klPerDimension.scalars.reduce(0, +) }
}

/// The negative ELBO's terms for a batch x (B, D) with reparameterisation
/// noise (B, Z), summed over the batch. The loss is `reconstruction + β·kl`;
/// its gradient is the pullback of `ELBOTerms(reconstruction: 1,
/// klPerDimension: β)` (a per-dimension β implements free bits).
@differentiable(reverse, wrt: model)
public func negativeELBO<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, noise: Tensor, likelihood: Likelihood
) -> ELBOTerms {
    let q = model.encode(x)
    let z = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: noise)
    let reconstruction = likelihood.negativeLogLikelihood(x, given: model.decode(z))
    return ELBOTerms(reconstruction: reconstruction,
                     klPerDimension: gaussianKLPerDimension(mean: q.mean, logVariance: q.logVariance))
}

extension Likelihood {
    /// log p(x | decoder output) of each sample (row of x), in nats.
    public func logLikelihoodPerSample(_ x: Tensor, given output: DecoderOutput) -> [Double] {
        switch self {
        case .bernoulli:
            return bceWithLogitsPerRow(logits: output.location, targets: x).map { -Double($0) }
        case .gaussian(let logVariance):
            let w = fastExp(-logVariance), c = 0.5 * logVariance + halfLogTwoPi
            return rowSums(output.location.zipMap(x) { m, v in -(0.5 * (v - m) * (v - m) * w + c) })
        case .gaussianLearned:
            let range = learnedLogVarianceRange
            let r2 = output.location.zipMap(x) { m, v in (v - m) * (v - m) }
            return rowSums(r2.zipMap(output.logVariance) { r, v in
                let lv = Swift.min(Swift.max(v, range.lowerBound), range.upperBound)
                return -(0.5 * (r * fastExp(-lv) + lv) + halfLogTwoPi)
            })
        }
    }

    /// E[x | z]: the image a decoder output stands for (Bernoulli: the
    /// sigmoid of the logits; Gaussian: the mean).
    public func mean(_ output: DecoderOutput) -> Tensor {
        switch self {
        case .bernoulli: return sigmoid(output.location)
        case .gaussian, .gaussianLearned: return output.location
        }
    }
}

/// The importance-weighted estimate of log p(x) (Burda, Grosse &
/// Salakhutdinov 2016) with K samples from q(z | x):
/// log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x), z_k = μ + ε_k·σ,
/// computed with logsumexp in Double. Legend: K samples, B batch, Z latent.
public struct ImportanceWeightedEstimate: Equatable {
    /// log w_k for each sample k and image b: K arrays of B values.
    public var logWeights: [[Double]]
    /// The estimate of log p(x), one value per image (B).
    public var logLikelihood: [Double]
}

/// `noise` holds K tensors of standard normals, each (B, Z).
public func importanceWeightedLogLikelihood<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, noise: [Tensor], likelihood: Likelihood
) -> ImportanceWeightedEstimate {
    precondition(!noise.isEmpty, "importance weighting needs at least one sample")
    let q = model.encode(x)
    let b = x.shape[0]
    let z = q.mean.count / max(b, 1)
    let halfLog2Pi = 0.5 * 1.837_877_066_409_345_5  // ½ log 2π
    var logWeights: [[Double]] = []
    for eps in noise {
        let zk = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps)
        let logPxz = likelihood.logLikelihoodPerSample(x, given: model.decode(zk))
        var w = [Double](repeating: 0, count: b)
        for i in 0..<b {
            var logPz = 0.0, logQz = 0.0
            for j in 0..<z {
                let index = i * z + j
                let zv = Double(zk.scalars[index]), e = Double(eps.scalars[index])
                logPz += -0.5 * zv * zv - halfLog2Pi
                // log N(z; μ, σ²) with z = μ + εσ: −½ε² − ½log2π − ½logσ²
                logQz += -0.5 * e * e - halfLog2Pi - 0.5 * Double(q.logVariance.scalars[index])
            }
            w[i] = logPxz[i] + logPz - logQz
        }
        logWeights.append(w)
    }
    let k = Double(noise.count)
    let estimate = (0..<b).map { i -> Double in
        let m = logWeights.map { $0[i] }.max()!
        let s = logWeights.reduce(0.0) { $0 + Foundation.exp($1[i] - m) }
        return m + Foundation.log(s) - Foundation.log(k)
    }
    return ImportanceWeightedEstimate(logWeights: logWeights, logLikelihood: estimate)
}
