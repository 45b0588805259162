import _Differentiation
import TensorCore

/// The terms of the negative ELBO for a batch, each summed over the batch (nats).
/// Legend: B batch, D data dimensions, Z latent.
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

/// The name of a term an objective reports: its key in metrics.jsonl and
/// TensorBoard (`train/<key>`, `test_<key>`), its short label on the
/// progress line and its name in sentences.
public struct TermName: Equatable, Sendable {
    public let key: String
    public let label: String
    public let name: String
}

extension ELBOTerms {
    /// The scalar terms a step reports, named once: the trainer's reduction
    /// buffer, metrics.jsonl, the progress line and the TensorBoard tags all
    /// follow this list, in this order (a term's raw value is its index).
    public enum Term: Int, CaseIterable, Sendable {
        case reconstruction
        case kl

        public var name: TermName {
            switch self {
            case .reconstruction: return TermName(key: "reconstruction", label: "rec", name: "reconstruction")
            case .kl: return TermName(key: "kl", label: "KL", name: "KL")
            }
        }
    }

    /// The names of the reported terms, in order.
    public static let reported: [TermName] = Term.allCases.map(\.name)

    public func value(_ term: Term) -> Float {
        switch term {
        case .reconstruction: return reconstruction
        case .kl: return kl
        }
    }

    /// The values of the reported terms, in order.
    public var reportedValues: [Float] { Term.allCases.map(value) }
}

/// A batch as the objective sees it. Legend: B batch, D data dimensions, K classes.
public struct DataBatch {
    /// What the encoder reads: levels scaled by 1/(K−1), floats as they
    /// are, standardized columns standardized.                     (B, D)
    public var input: Tensor
    /// What the likelihood scores, in its representation
    /// (`Likelihood.targets`): the input itself, or the integer levels. (B, D)
    public var target: Tensor
    /// The one-hot labels of a conditional model, (B, K); (B, 0) otherwise.
    public var condition: Tensor
    /// Which values are observed, (B, D): 1 observed, 0 missing; nil when
    /// every value is. Missing values are 0 in `input` and `target`; the
    /// model fills them for its encoder (`encode(_:mask:condition:on:)`) and the likelihood
    /// leaves them out.
    public var mask: Tensor?

    /// `target` defaults to the input; `condition` to none; `mask` to every value observed.
    public init(input: Tensor, target: Tensor? = nil, condition: Tensor? = nil, mask: Tensor? = nil) {
        self.input = input
        self.target = target ?? input
        self.condition = condition ?? Tensor(zeros: [input.shape[0], 0])
        precondition(mask == nil || mask!.shape == input.shape, "a mask of \(mask!.shape) for a batch of \(input.shape)")
        self.mask = mask
    }

    public var count: Int { input.shape[0] }
}

/// The negative ELBO's terms for a batch with reparameterisation noise
/// (B, Z), summed over the batch: the objective of training. The loss is
/// `reconstruction + β·kl`; its gradient is the pullback of
/// `ELBOTerms(reconstruction: 1, klPerDimension: β)` (a per-dimension β
/// implements free bits; see `KLControls`).
@differentiable(reverse, wrt: model)
public func negativeELBO<Model: VariationalAutoencoder>(
    _ model: Model, batch: DataBatch, noise: Tensor, likelihood: Likelihood, on backend: Backend
) -> ELBOTerms {
    let q = model.encode(batch.input, mask: batch.mask, condition: batch.condition, on: backend)
    let z = q.sample(noise: noise)
    let output = model.decode(z, condition: batch.condition, on: backend)
    return ELBOTerms(reconstruction: negativeLogLikelihood(batch.target, given: output, under: likelihood,
                                                           mask: batch.mask),
                     klPerDimension: q.klPerDimension())
}

/// `negativeELBO(_:batch:…)` for x that is both the input and the target.
@differentiable(reverse, wrt: model)
public func negativeELBO<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, condition: Tensor = Tensor(zeros: [0, 0]), noise: Tensor, likelihood: Likelihood,
    on backend: Backend
) -> ELBOTerms {
    let q = model.encode(x, condition: condition, on: backend)
    let z = q.sample(noise: noise)
    let output = model.decode(z, condition: condition, on: backend)
    return ELBOTerms(reconstruction: negativeLogLikelihood(x, given: output, under: likelihood),
                     klPerDimension: q.klPerDimension())
}

/// The same terms as `negativeELBO` for evaluation and scoring, without a
/// pullback, and per sample as well as summed.
public struct SampleTerms {
    /// −log p(x | z) summed over the batch, as training sums it.
    public var reconstruction: Float
    /// KL(q ‖ p) per latent dimension, summed over the batch: (Z).
    public var klPerDimension: Tensor
    /// −log p(x | z) of each sample, in nats.
    public var reconstructionPerSample: [Double]
    /// KL(q ‖ p) of each sample, in nats.
    public var klPerSample: [Double]
    /// E_q[z] of each sample, (B, Z).
    public var posteriorMean: Tensor

    /// The batch's terms as training reports them.
    public var elbo: ELBOTerms { ELBOTerms(reconstruction: reconstruction, klPerDimension: klPerDimension) }
}

/// The terms of each sample of a batch under one draw of the latent:
/// z = q.sample(noise).
public func sampleTerms<Model: VariationalAutoencoder>(
    _ model: Model, batch: DataBatch, noise: Tensor, likelihood: Likelihood, on backend: Backend
) -> SampleTerms {
    let q = model.encode(batch.input, mask: batch.mask, condition: batch.condition, on: backend)
    let output = model.decode(q.sample(noise: noise), condition: batch.condition, on: backend)
    let b = batch.count, d = b == 0 ? 0 : batch.target.count / b
    let terms = likelihood.elementTerms(batch.target, given: output, gradient: false, mask: batch.mask).terms
    let perSample = terms.withUnsafeBufferPointer { t in
        (0..<b).map { r in Double(vectorSum(t.baseAddress! + r * d, count: d)) }
    }
    return SampleTerms(reconstruction: terms.vectorSum(), klPerDimension: q.klPerDimension(),
                       reconstructionPerSample: perSample, klPerSample: q.klPerSample(), posteriorMean: q.mean)
}

/// How the KL term weighs in the training objective: β (Higgins et al.
/// 2017), a linear warm-up of β over the first steps (Bowman et al. 2016),
/// and free bits λ (Kingma et al. 2016): each latent dimension's KL, the mean
/// over the *global* batch, counts as at least λ nats.
public struct KLControls: Codable, Equatable, Sendable {
    public var beta = 1.0
    /// Steps over which the weight ramps linearly from 0 to β (0: none).
    public var warmupSteps = 0
    /// λ in nats per latent dimension; 0: none.
    public var freeBits = 0.0

    public init(beta: Double = 1, warmupSteps: Int = 0, freeBits: Double = 0) {
        self.beta = beta
        self.warmupSteps = warmupSteps
        self.freeBits = freeBits
    }

    /// The rules of each value (`InvalidSetting` names the field).
    public func validate() throws {
        try InvalidSetting.require(beta.isFinite && beta >= 0, "beta", "must be ≥ 0 (got \(beta))")
        try InvalidSetting.check("warmup_steps", warmupSteps, atLeast: 0)
        try InvalidSetting.require(freeBits.isFinite && freeBits >= 0, "free_bits", "must be ≥ 0 (got \(freeBits))")
    }

    /// β at a (1-based) step.
    public func weight(atStep step: Int) -> Double {
        warmupSteps > 0 ? beta * min(1, Double(step) / Double(warmupSteps)) : beta
    }

    /// Free bits compare each dimension's KL over the global batch with λ, so
    /// a step needs those Z sums (and the sample count) from every rank
    /// before its backward pass.
    public var needsGlobalKLPerDimension: Bool { freeBits > 0 }

    /// The pullback's seed for the KL term: β for every dimension; with free
    /// bits, 0 where the floor λ holds (max(KL_j, λ) does not depend on KL_j
    /// there). `global` is (Σ KL_j over the global batch, Z values; samples).
    public func klSeed(beta: Double, latentSize z: Int, global: (klPerDimension: [Float], count: Float)?) -> Tensor {
        guard freeBits > 0, let global else { return Tensor(repeating: Float(beta), shape: [z]) }
        let threshold = Float(freeBits) * global.count
        return Tensor(shape: [z], scalars: (0..<z).map { global.klPerDimension[$0] > threshold ? Float(beta) : 0 })
    }

    /// What the step minimised, summed over the global batch:
    /// reconstruction + β·KL, with free bits Σ_j max(KL_j, λ·samples) for KL.
    public func objective(reconstruction: Double, kl: Double, beta: Double,
                          global: (klPerDimension: [Float], count: Float)?) -> Double {
        guard freeBits > 0, let global else { return reconstruction + beta * kl }
        let floor = freeBits * Double(global.count)
        let klTerm = global.klPerDimension.reduce(0.0) { $0 + max(Double($1), floor) }
        return reconstruction + beta * klTerm
    }
}
