import _Differentiation
import Foundation
import TensorCore

/// The observation model p(x | z).
public enum Likelihood: Equatable, Sendable {
    /// Independent Bernoulli per dimension; the decoder emits logits; x in [0, 1].
    case bernoulli

    /// −log p(x | decoder output), summed over the batch and dimensions.
    @differentiable(reverse, wrt: output)
    public func negativeLogLikelihood(_ x: Tensor, given output: DecoderOutput) -> Float {
        switch self {
        case .bernoulli:
            return bceWithLogits(logits: output.location, targets: x)
        }
    }
}

/// The two terms of the negative ELBO, each summed over the batch (nats).
public struct ELBOTerms: Differentiable, Equatable {
    /// −E_q[log p(x | z)], one-sample estimate.
    public var reconstruction: Float
    /// KL(q(z | x) ‖ p(z)), closed form.
    public var kl: Float

    @differentiable(reverse)
    public init(reconstruction: Float, kl: Float) {
        self.reconstruction = reconstruction
        self.kl = kl
    }
}

/// The negative ELBO's terms for a batch x (B, D) with reparameterisation
/// noise (B, Z), summed over the batch. The loss is `reconstruction + β·kl`;
/// its gradient is the pullback of `ELBOTerms(reconstruction: 1, kl: β)`.
@differentiable(reverse, wrt: model)
public func negativeELBO<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, noise: Tensor, likelihood: Likelihood
) -> ELBOTerms {
    let q = model.encode(x)
    let z = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: noise)
    let reconstruction = likelihood.negativeLogLikelihood(x, given: model.decode(z))
    return ELBOTerms(reconstruction: reconstruction,
                     kl: gaussianKL(mean: q.mean, logVariance: q.logVariance))
}

extension Likelihood {
    /// log p(x | decoder output) of each sample (row of x), in nats.
    public func logLikelihoodPerSample(_ x: Tensor, given output: DecoderOutput) -> [Double] {
        switch self {
        case .bernoulli:
            return bceWithLogitsPerRow(logits: output.location, targets: x).map { -Double($0) }
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
