import _Differentiation
import TensorCore

/// The approximate posterior q(z | x) = N(mean, exp(logVariance)), per sample.
/// Legend: B batch, Z latent.
public struct Posterior: Differentiable {
    public var mean: Tensor         // (B, Z)
    public var logVariance: Tensor  // (B, Z)

    @differentiable(reverse)
    public init(mean: Tensor, logVariance: Tensor) {
        self.mean = mean
        self.logVariance = logVariance
    }
}

/// What the decoder emits for each sample. Legend: B batch, D data dimensions.
public struct DecoderOutput: Differentiable {
    /// Bernoulli logits, or the Gaussian mean.                    (B, D)
    public var location: Tensor
    /// Per-dimension log σ² from a learned-variance head, or (B, 0) when the
    /// model has none.
    public var logVariance: Tensor

    @differentiable(reverse)
    public init(location: Tensor, logVariance: Tensor) {
        self.location = location
        self.logVariance = logVariance
    }
}

/// A VAE: an encoder to q(z | x) and a decoder to p(x | z)'s parameters.
///
/// Inputs are flat, (B, D) with D = C·H·W; convolutional models reshape
/// inside. The condition is (B, K): the one-hot label of a conditional VAE
/// (Sohn et al. 2015), (B, 0) for an unconditional one. The tangent of a model is the model type itself, so one parameter
/// walk serves parameters, gradients and optimizer moments.
public protocol VariationalAutoencoder: Differentiable, AdditiveArithmetic, ParameterWalking
    where TangentVector == Self
{
    /// x (B, D) → q(z | x). Differentiable with respect to the model only:
    /// x is data, so the first layer's pullback skips the input gradient.
    @differentiable(reverse, wrt: self)
    func encode(_ x: Tensor, condition: Tensor, on backend: Backend) -> Posterior

    /// z (B, Z) → p(x | z)'s parameters.
    @differentiable(reverse, wrt: (self, z))
    func decode(_ z: Tensor, condition: Tensor, on backend: Backend) -> DecoderOutput

    /// Z.
    var latentSize: Int { get }
    /// D.
    var dataSize: Int { get }
    /// K: the classes a conditional model takes; 0 for an unconditional one.
    var classes: Int { get }
}

extension VariationalAutoencoder {
    /// An unconditional model's encoder: the condition is (B, 0).
    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, on backend: Backend) -> Posterior {
        encode(x, condition: withoutDerivative(at: Tensor(zeros: [x.shape[0], 0])), on: backend)
    }

    /// An unconditional model's decoder: the condition is (B, 0).
    @differentiable(reverse, wrt: (self, z))
    public func decode(_ z: Tensor, on backend: Backend) -> DecoderOutput {
        decode(z, condition: withoutDerivative(at: Tensor(zeros: [z.shape[0], 0])), on: backend)
    }
}
