import _Differentiation
import Foundation
import TensorCore

/// An approximate posterior q(z | x) for a batch, together with the prior
/// p(z) it is measured against: everything the objective needs of the
/// latent space. A model family names its type (`VariationalAutoencoder.
/// Posterior`); a hierarchical or flow posterior is another conformance,
/// and nothing else in the objective changes.
/// Legend: B batch, Z latent.
public protocol LatentPosterior: Differentiable {
    /// E_q[z], (B, Z): what `encode` writes, interpolation and latent maps use.
    var mean: Tensor { get }
    /// A reparameterised draw z (B, Z) for standard-normal `noise` (B, Z).
    @differentiable(reverse, wrt: self)
    func sample(noise: Tensor) -> Tensor
    /// KL(q ‖ p) per latent dimension, summed over the batch: (Z).
    @differentiable(reverse, wrt: self)
    func klPerDimension() -> Tensor
    /// KL(q ‖ p) of each sample, in Double.
    func klPerSample() -> [Double]
    /// log q(z | x) of each sample, for z = sample(noise: noise).
    func logDensity(of z: Tensor, noise: Tensor) -> [Double]
    /// log q(z | x) of each sample at any z (B, Z), in Double.
    func logDensity(of z: Tensor) -> [Double]
    /// This posterior with each row repeated `times` times in a row (row
    /// i·times + t is row i): many draws of one sample in one batch.
    func repeatingRows(_ times: Int) -> Self
    /// log p(z) of each row of z under the prior.
    static func logPrior(_ z: Tensor) -> [Double]
}

/// q(z | x) = N(mean, exp(logVariance)), diagonal, against the prior
/// p(z) = N(0, I) (Kingma & Welling 2014).
public struct GaussianPosterior: LatentPosterior {
    public var mean: Tensor         // (B, Z)
    public var logVariance: Tensor  // (B, Z)

    @differentiable(reverse)
    public init(mean: Tensor, logVariance: Tensor) {
        self.mean = mean
        self.logVariance = logVariance
    }

    /// z = μ + ε·σ.
    @differentiable(reverse, wrt: self)
    public func sample(noise: Tensor) -> Tensor {
        reparameterize(mean: mean, logVariance: logVariance, noise: noise)
    }

    /// KL(N(μ, σ²) ‖ N(0, 1)) = −½ (1 + log σ² − μ² − σ²), closed form.
    @differentiable(reverse, wrt: self)
    public func klPerDimension() -> Tensor {
        gaussianKLPerDimension(mean: mean, logVariance: logVariance)
    }

    public func klPerSample() -> [Double] {
        let z = mean.shape[1]
        return (0..<mean.shape[0]).map { i in
            var kl = 0.0
            for j in 0..<z {
                let m = Double(mean.scalars[i * z + j]), lv = Double(logVariance.scalars[i * z + j])
                kl += 0.5 * (m * m + Foundation.exp(lv) - 1 - lv)
            }
            return kl
        }
    }

    /// log N(z; μ, σ²) with z = μ + εσ: Σ_j −½ε² − ½ log 2π − ½ log σ².
    public func logDensity(of z: Tensor, noise: Tensor) -> [Double] {
        let width = mean.shape[1]
        return (0..<mean.shape[0]).map { i in
            var logQ = 0.0
            for j in 0..<width {
                let e = Double(noise.scalars[i * width + j])
                logQ += -0.5 * e * e - Self.halfLogTwoPi - 0.5 * Double(logVariance.scalars[i * width + j])
            }
            return logQ
        }
    }

    public func repeatingRows(_ times: Int) -> GaussianPosterior {
        GaussianPosterior(mean: mean.repeatingRows(times), logVariance: logVariance.repeatingRows(times))
    }

    /// log N(z; μ, σ²) at any z: Σ_j −½ (z − μ)²/σ² − ½ log σ² − ½ log 2π.
    public func logDensity(of z: Tensor) -> [Double] {
        let width = mean.shape[1]
        precondition(z.shape == mean.shape, "log q of z \(z.shape) under a posterior of \(mean.shape)")
        return (0..<mean.shape[0]).map { i in
            var logQ = 0.0
            for j in 0..<width {
                let lv = Double(logVariance.scalars[i * width + j])
                let r = Double(z.scalars[i * width + j]) - Double(mean.scalars[i * width + j])
                logQ += -0.5 * r * r * Foundation.exp(-lv) - 0.5 * lv - Self.halfLogTwoPi
            }
            return logQ
        }
    }

    /// log N(z; 0, I): Σ_j −½ z_j² − ½ log 2π.
    public static func logPrior(_ z: Tensor) -> [Double] {
        let width = z.shape[1]
        return (0..<z.shape[0]).map { i in
            var logP = 0.0
            for j in 0..<width {
                let v = Double(z.scalars[i * width + j])
                logP += -0.5 * v * v - halfLogTwoPi
            }
            return logP
        }
    }

    static let halfLogTwoPi = 0.5 * 1.837_877_066_409_345_5
}
