import Foundation
import TensorCore

/// A beta-binomial per dimension over K integer levels, n = K − 1 trials
/// (Townsend, Bird & Barber 2019, BB-ANS): the decoder gives log α and
/// log β (heads 0 and 1), clamped to `logParameterRange` (zero gradient
/// outside), and
///
///   log P(k) = log C(n, k) + log B(k + α, n − k + β) − log B(α, β)
///
/// with the log-beta functions written as differences of log Γ. They are
/// computed in Double (`ScalarMath.logGamma`, `digamma`): with α near e^15
/// each log Γ is about 5e7, and Float could not hold their differences.
/// Gradients: ∂/∂α = ψ(k + α) − ψ(α) − ψ(n + α + β) + ψ(α + β), and the
/// same for β with n − k; times α (or β) for the log-parameters.
public struct BetaBinomialLikelihood: LikelihoodComponent {
    public static let name = "beta-binomial"
    public static let summary = "beta-binomial over integer levels, n = K − 1 (log α and log β from the decoder)"
    public static let settings: [LikelihoodSetting] = []
    /// α and β from e^−10 ≈ 4.5e−5 to e^15 ≈ 3.3e6.
    public static let logParameterRange: ClosedRange<Float> = -10 ... 15

    /// K, once known from the data.
    public var levelCount: Int?

    public init(levels: Int? = nil) { levelCount = levels }
    public init(settings: LikelihoodSettings) throws { self.init() }

    public func validate() throws {
        if let k = levelCount { try InvalidSetting.check("levels", k, in: 2...65536) }
    }

    public var outputsPerDimension: Int { 2 }
    /// `fc4_logbeta`, `dec.deconvN_logbeta` (head 0 is log α).
    public var auxiliaryHeadName: String { "logbeta" }
    public var domain: DataDomain { .levels }
    public var levels: Int? { levelCount }
    public var description: String { "beta-binomial" + (levelCount.map { ", \($0) levels" } ?? "") }

    public func resolved(for data: DataDescription) -> BetaBinomialLikelihood {
        BetaBinomialLikelihood(levels: levelCount ?? data.levels)
    }

    /// log C(n, k) for k = 0…n.
    static func logBinomialCoefficients(_ n: Int) -> [Double] {
        let logFactorialN = LibmMath.logGamma(Double(n) + 1)
        return (0...n).map { k in logFactorialN - LibmMath.logGamma(Double(k) + 1) - LibmMath.logGamma(Double(n - k) + 1) }
    }

    /// log P(k | α, β) and, if asked, ∂/∂α and ∂/∂β.
    @inline(__always)
    static func logProbability<M: ScalarMath>(level k: M.Value, trials n: M.Value, logChoose: M.Value,
                                              alpha: M.Value, beta: M.Value, gradient: Bool, _: M.Type)
        -> (value: M.Value, dAlpha: M.Value, dBeta: M.Value)
    {
        let total = alpha + beta
        let value = logChoose + (M.logGamma(k + alpha) - M.logGamma(alpha)) + (M.logGamma(n - k + beta) - M.logGamma(beta))
            - (M.logGamma(n + total) - M.logGamma(total))
        guard gradient else { return (value, 0, 0) }
        let common = M.digamma(total) - M.digamma(n + total)
        return (value, M.digamma(k + alpha) - M.digamma(alpha) + common, M.digamma(n - k + beta) - M.digamma(beta) + common)
    }

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let k = levelCount ?? 256, n = Double(k - 1), width = parameters.width
        let logChoose = Self.logBinomialCoefficients(k - 1)
        let range = Self.logParameterRange
        for row in 0..<rows {
            let la = parameters.plane(0, row: row), lb = parameters.plane(1, row: row)
            let xs = x + row * width, out = terms + row * width
            let ga = gradient?.plane(0, row: row), gb = gradient?.plane(1, row: row)
            for j in 0..<width {
                let level = Swift.min(Swift.max(Int(xs[j]), 0), k - 1)
                let ta = Swift.min(Swift.max(la[j], range.lowerBound), range.upperBound)
                let tb = Swift.min(Swift.max(lb[j], range.lowerBound), range.upperBound)
                let alpha = Foundation.exp(Double(ta)), beta = Foundation.exp(Double(tb))
                let p = Self.logProbability(level: Double(level), trials: n, logChoose: logChoose[level], alpha: alpha, beta: beta,
                                            gradient: gradient != nil, LibmMath.self)
                out[j] = Float(-p.value)
                if let ga, let gb {
                    // As torch.clamp: no gradient outside the range, nor on its ends.
                    ga[j] = la[j] > range.lowerBound && la[j] < range.upperBound ? Float(-p.dAlpha * alpha) : 0
                    gb[j] = lb[j] > range.lowerBound && lb[j] < range.upperBound ? Float(-p.dBeta * beta) : 0
                }
            }
        }
    }

    /// (α, β) of every element, clamped, in Double.
    func shapeParameters(_ output: DecoderOutput) -> [(alpha: Double, beta: Double)] {
        let range = Self.logParameterRange
        func clamp(_ v: Float) -> Double { Double(Swift.min(Swift.max(v, range.lowerBound), range.upperBound)) }
        return zip(output.location.scalars, output.auxiliary.scalars).map { (Foundation.exp(clamp($0)), Foundation.exp(clamp($1))) }
    }

    /// E[k]/n = α/(α + β).
    public func mean(_ output: DecoderOutput) -> Tensor {
        let parameters = shapeParameters(output)
        return Tensor(shape: output.location.shape) { out in
            for i in 0..<out.count { out[i] = Float(parameters[i].alpha / (parameters[i].alpha + parameters[i].beta)) }
        }
    }

    /// By the inverse of the level CDF, with the first uniform.
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let k = levelCount ?? 256
        let probabilities = levelProbabilities(output)!
        return Tensor(shape: output.location.shape) { out in
            for i in 0..<out.count {
                var u = Double(uniforms(i, 0)), level = k - 1
                for l in 0..<k {
                    u -= probabilities[i * k + l]
                    if u < 0 { level = l; break }
                }
                out[i] = Float(level) / Float(k - 1)
            }
        }
    }

    public func levelProbabilities(_ output: DecoderOutput) -> [Double]? {
        let k = levelCount ?? 256, n = Double(k - 1)
        let logChoose = Self.logBinomialCoefficients(k - 1)
        let parameters = shapeParameters(output)
        var probabilities = [Double](repeating: 0, count: parameters.count * k)
        for (i, p) in parameters.enumerated() {
            for level in 0..<k {
                probabilities[i * k + level] = Foundation.exp(Self.logProbability(
                    level: Double(level), trials: n, logChoose: logChoose[level], alpha: p.alpha, beta: p.beta,
                    gradient: false, LibmMath.self).value)
            }
        }
        return probabilities
    }

    /// Cumulative sums of P(k), from log P(0) = log B(α, n + β) − log B(α, β)
    /// (log Γ) and log P(k + 1) = log P(k) + log((n − k)(k + α)/((k + 1)(n −
    /// k − 1 + β))), exponentiated against their maximum and normalised (so
    /// that no level underflows to a zero row however extreme α and β are).
    @_specialize(where M == PortableMath)
    @_specialize(where M == LibmMath)
    public func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]? {
        let k = levelCount ?? 256, n = M.Value(k - 1)
        let lower = M.Value(Self.logParameterRange.lowerBound), upper = M.Value(Self.logParameterRange.upperBound)
        let alpha = M.exp(Swift.min(Swift.max(parameters[0], lower), upper))
        let beta = M.exp(Swift.min(Swift.max(parameters[1], lower), upper))
        var logP = [M.Value](repeating: 0, count: k)
        logP[0] = M.logGamma(n + beta) + M.logGamma(alpha + beta) - M.logGamma(beta) - M.logGamma(n + alpha + beta)
        for level in 0..<(k - 1) {
            let j = M.Value(level)
            logP[level + 1] = logP[level] + M.log((n - j) * (j + alpha) / ((j + 1) * (n - j - 1 + beta)))
        }
        let m = logP.max()!
        var cdf = [M.Value](repeating: 0, count: k + 1)
        var sum: M.Value = 0
        for level in 0..<k {
            sum += M.exp(logP[level] - m)
            cdf[level + 1] = sum
        }
        for level in 1..<k { cdf[level] /= sum }
        cdf[k] = 1
        return cdf
    }

    enum CodingKeys: String, CodingKey { case levels }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        levelCount = try c.decodeIfPresent(Int.self, forKey: .levels)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(levelCount, forKey: .levels)
    }
}
