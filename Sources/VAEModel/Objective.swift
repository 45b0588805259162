import _Differentiation
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
