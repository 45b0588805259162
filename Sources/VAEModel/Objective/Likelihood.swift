import _Differentiation
import Foundation
import TensorCore

/// The observation model p(x | z), part of a model's architecture (it fixes
/// whether the decoder has a variance head, and what data it accepts).
/// Codable as `{"type": "bernoulli"}`, `{"type": "gaussian", "sigma": 0.5}` or
/// `{"type": "gaussian-learned"}`.
public enum Likelihood: Equatable, Sendable {
    /// Independent Bernoulli per dimension; the decoder emits logits; x in [0, 1].
    case bernoulli
    /// Independent Gaussian per dimension with a fixed standard deviation σ;
    /// the decoder emits the mean.
    case gaussian(sigma: Double)
    /// Independent Gaussian with a per-dimension variance from a second
    /// decoder head (log σ², clamped to `learnedLogVarianceRange`).
    case gaussianLearned

    /// The likelihood families, by the names configurations use.
    public enum Kind: String, CaseIterable, Codable, Sendable {
        case bernoulli
        case gaussian
        case gaussianLearned = "gaussian-learned"
    }

    public var kind: Kind {
        switch self {
        case .bernoulli: return .bernoulli
        case .gaussian: return .gaussian
        case .gaussianLearned: return .gaussianLearned
        }
    }

    /// The likelihood of `kind`; `sigma` is used by `.gaussian` only.
    public init(_ kind: Kind, sigma: Double = 1) {
        switch kind {
        case .bernoulli: self = .bernoulli
        case .gaussian: self = .gaussian(sigma: sigma)
        case .gaussianLearned: self = .gaussianLearned
        }
    }

    /// log σ² of the fixed-variance Gaussian, as the loss kernels take it.
    static func logVariance(sigma: Double) -> Float { Float(2 * Foundation.log(sigma)) }

    /// −log p(x | decoder output), summed over the batch and dimensions, in
    /// nats (Gaussian: the density's constant included).
    @differentiable(reverse, wrt: output)
    public func negativeLogLikelihood(_ x: Tensor, given output: DecoderOutput) -> Float {
        switch self {
        case .bernoulli:
            return bceWithLogits(logits: output.location, targets: x)
        case .gaussian(let sigma):
            return gaussianNLL(mean: output.location, targets: x, logVariance: Self.logVariance(sigma: sigma))
        case .gaussianLearned:
            return gaussianNLL(mean: output.location, logVariance: output.logVariance, targets: x)
        }
    }

    /// log p(x | decoder output) of each sample (row of x), in nats.
    public func logLikelihoodPerSample(_ x: Tensor, given output: DecoderOutput) -> [Double] {
        switch self {
        case .bernoulli:
            return bceWithLogitsPerRow(logits: output.location, targets: x).map { -Double($0) }
        case .gaussian(let sigma):
            let logVariance = Self.logVariance(sigma: sigma)
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

    /// Whether the decoder needs a log-variance head.
    public var learnsVariance: Bool { self == .gaussianLearned }

    /// Whether the data must lie in [0, 1].
    public var needsUnitInterval: Bool { self == .bernoulli }
}

extension Likelihood: CustomStringConvertible {
    /// "bernoulli", "gaussian, σ = 0.5", "gaussian-learned".
    public var description: String {
        if case .gaussian(let sigma) = self { return "gaussian, σ = \(sigma)" }
        return kind.rawValue
    }
}

extension Likelihood: Codable {
    enum CodingKeys: String, CodingKey { case type, sigma }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(Kind.self, forKey: .type)
        let sigma = try c.decodeIfPresent(Double.self, forKey: .sigma) ?? 1
        guard sigma.isFinite && sigma > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .sigma, in: c, debugDescription: "σ must be positive, got \(sigma)")
        }
        self.init(kind, sigma: sigma)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .type)
        if case .gaussian(let sigma) = self { try c.encode(sigma, forKey: .sigma) }
    }
}
