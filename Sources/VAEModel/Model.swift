import _Differentiation
import TensorCore

/// What the decoder emits for each sample: the likelihood's P parameters per
/// data dimension (see `LikelihoodComponent.outputsPerDimension`).
/// Legend: B batch, D data dimensions, P parameters per dimension.
public struct DecoderOutput: Differentiable {
    /// Parameter 0 of every dimension (Bernoulli logits, a Gaussian's mean,
    /// a logistic's location):                                      (B, D)
    public var location: Tensor
    /// Parameters 1…P−1, parameter-major within each row, (B, (P−1)·D): a
    /// learned Gaussian's log σ², a logistic's log-scale, …; (B, 0) when P = 1.
    public var auxiliary: Tensor

    @differentiable(reverse)
    public init(location: Tensor, auxiliary: Tensor) {
        self.location = location
        self.auxiliary = auxiliary
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
    /// The family's approximate posterior and, with it, its prior (see
    /// `LatentPosterior`): every model here has the diagonal Gaussian and
    /// N(0, I).
    associatedtype Posterior: LatentPosterior = GaussianPosterior

    /// x (B, D) → q(z | x). Differentiable with respect to the model only:
    /// x is data, so the first layer's pullback skips the input gradient.
    @differentiable(reverse, wrt: self)
    func encode(_ x: Tensor, condition: Tensor, on backend: Backend) -> Posterior

    /// q(z | x) of a batch with missing values (`mask` (B, D), 1 observed,
    /// 0 missing; x is 0 where missing): the encoder reads x itself (zero
    /// fill), or x with the model's learned constants where values are
    /// missing (`--missing-fill learned`, MIWAE's learned fill), whose
    /// gradient then flows through the first layer.
    @differentiable(reverse, wrt: self)
    func encode(_ x: Tensor, mask: Tensor?, condition: Tensor, on backend: Backend) -> Posterior

    /// The importance-weighted bound's training terms for K draws per
    /// image (see `negativeImportanceWeightedTerms`); the diagonal Gaussian
    /// posterior provides it.
    @differentiable(reverse, wrt: self)
    func importanceWeightedTerms(batch: DataBatch, noise: Tensor, samples k: Int, likelihood: Likelihood,
                                 on backend: Backend) -> ELBOTerms

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
