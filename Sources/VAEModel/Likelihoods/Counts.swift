import Foundation
import TensorCore

// Likelihoods of count rows: interactions (Mult-VAE, Liang et al. 2018) and
// count matrices (scVI, Lopez et al. 2018). Head 0 holds logits l over the D
// features of a row. The multinomial scores the row's counts as draws from
// softmax(l); Poisson, negative binomial and ZINB give feature j the mean
// μ_j = ℓ · softmax(l)_j with ℓ = Σ_j x_j the row's observed library size
// (scVI's use_observed_lib_size). The NB and ZINB terms are scvi-tools'
// `log_nb_positive` and `log_zinb_positive` (ε = 1e−8), θ = exp(log θ) from
// head 1 and the ZINB dropout logits π from head 2. All in Double.
//
// Because softmax couples a row's features, each gradient with respect to
// l_j is computed per row: with a_i = ∂(−log p_i)/∂μ_i,
//     ∂/∂l_j = μ_j a_j − s_j Σ_i μ_i a_i.
// Their mean and samples are those of a library of one count (E[x] is the
// share of each feature, softmax(l)); missing values are not supported.

/// ε of scvi-tools' NB and ZINB formulas.
let countEpsilon = 1e-8

/// Per row: the softmax of the logits into `shares` and log Σ_j e^(l_j):
/// the exponentials in Float with the vectorised `fastExp`, their sum and
/// the log in Double (a row of D logits is the costly part of a count
/// likelihood; Mult-VAE's output layer has one per item).
@inline(__always)
func rowSoftmax(_ logits: UnsafePointer<Float>, width: Int, into shares: UnsafeMutablePointer<Float>) -> Double {
    // The largest logit and the exponentials (the loops `top = Swift.max(top,
    // l_j)` and `shares_j = fastExp(l_j − top)`, vectorised in C, same bits).
    let top = softmaxExponentials(logits, width: width, into: shares)
    let total = Double(vectorSum(shares, count: width))
    let inverse = Float(1 / total)
    for j in 0..<width { shares[j] *= inverse }
    return Double(top) + Foundation.log(total)
}

/// The clamp of log θ: θ from e^−20 to e^20, no gradient outside (as `torch.clamp`).
let logDispersionRange: ClosedRange<Double> = -20 ... 20

/// What the count likelihoods share: no settings, counts as their data, and
/// the shares of a row (softmax of head 0) as their mean, with a one-count
/// draw as their sample (E[x] of a library of one).
protocol CountLikelihoodComponent: LikelihoodComponent {
    init()
}

extension CountLikelihoodComponent {
    public static var settings: [LikelihoodSetting] { [] }
    public init(settings: LikelihoodSettings) throws { self.init() }
    public var domain: DataDomain { .counts }
    /// softmax(l): each feature's share.
    public func mean(_ output: DecoderOutput) -> Tensor { countShares(output) }

    /// One draw of one count per row (a library of one): a one-hot row.
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        oneCountDraw(output, uniforms: uniforms)
    }

    /// x ↦ the count it holds (negative or NaN read as 0: the data rules keep them out).
    @inline(__always)
    static func count(_ x: Float) -> Double { x > 0 ? Double(x) : 0 }
}

/// Mult-VAE's multinomial: −log p(x) = −Σ_j x_j log softmax(l)_j (the
/// multinomial coefficient, constant in the model, left out as the paper
/// does).
public struct MultinomialLikelihood: CountLikelihoodComponent {
    public static let name = "multinomial"
    public static let summary = "multinomial over a row's features, log-softmax of the logits (Mult-VAE; counts or clicks)"

    public init() {}

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let width = parameters.width
        var shares = [Float](repeating: 0, count: width)
        for row in 0..<rows {
            let l = parameters.plane(0, row: row), xs = x + row * width, out = terms + row * width
            let lse = rowSoftmax(l, width: width, into: &shares)
            // With c_j = count(x_j) and n = Σ c_j (in order, in Double):
            // out_j = c_j == 0 ? 0 : Float(−c_j (l_j − lse)), and the gradient
            // Float(n)·shares_j − Float(c_j). In C, where a row's zeros cost a
            // comparison (clicks are sparse).
            multinomialRow(logits: l, counts: xs, width: width, shares: shares, lse: lse, terms: out,
                           gradient: gradient?.plane(0, row: row))
        }
    }
}

/// Poisson counts with mean μ = ℓ·softmax(l): −log p = μ − x log μ + log Γ(x + 1).
public struct PoissonLikelihood: CountLikelihoodComponent {
    public static let name = "poisson"
    public static let summary = "Poisson counts, mean = library size × softmax of the logits"

    public init() {}

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let width = parameters.width
        var s = [Float](repeating: 0, count: width)
        for row in 0..<rows {
            let l = parameters.plane(0, row: row), xs = x + row * width, out = terms + row * width
            let lse = rowSoftmax(l, width: width, into: &s)
            var library = 0.0
            for j in 0..<width { library += Self.count(xs[j]) }
            let logLibrary = Foundation.log(library)
            for j in 0..<width {
                let c = Self.count(xs[j]), mu = library * Double(s[j])
                // x log μ with 0 log 0 = 0 (torch's xlogy).
                let xLogMu = c == 0 ? 0 : c * (logLibrary + Double(l[j]) - lse)
                out[j] = Float(mu - xLogMu + LibmMath.logGamma(c + 1))
            }
            // a_j = 1 − x_j/μ_j, so μ_j a_j = μ_j − x_j and Σ_i μ_i a_i = ℓ − Σ x = 0.
            if let g = gradient?.plane(0, row: row) {
                for j in 0..<width { g[j] = Float(library * Double(s[j]) - Self.count(xs[j])) }
            }
        }
    }
}

/// scvi-tools' `log_nb_positive(x, μ, θ, ε)` and its derivatives with
/// respect to μ and θ.
@inline(__always)
func logNegativeBinomial(_ x: Double, mu: Double, theta: Double, gradient: Bool)
    -> (value: Double, dMu: Double, dTheta: Double)
{
    let eps = countEpsilon
    let logThetaMuEps = Foundation.log(theta + mu + eps), logThetaEps = Foundation.log(theta + eps)
    let value = theta * (logThetaEps - logThetaMuEps) + x * (Foundation.log(mu + eps) - logThetaMuEps)
        + LibmMath.logGamma(x + theta) - LibmMath.logGamma(theta) - LibmMath.logGamma(x + 1)
    guard gradient else { return (value, 0, 0) }
    let dMu = x / (mu + eps) - (theta + x) / (theta + mu + eps)
    let dTheta = logThetaEps - logThetaMuEps + theta / (theta + eps) - (theta + x) / (theta + mu + eps)
        + LibmMath.digamma(x + theta) - LibmMath.digamma(theta)
    return (value, dMu, dTheta)
}

/// scvi-tools' `log_zinb_positive(x, μ, θ, π, ε)` (π the dropout logits)
/// and its derivatives with respect to μ, θ and π.
@inline(__always)
func logZeroInflatedNegativeBinomial(_ x: Double, mu: Double, theta: Double, pi: Double, gradient: Bool)
    -> (value: Double, dMu: Double, dTheta: Double, dPi: Double)
{
    let eps = countEpsilon
    let softplusPi = LibmMath.softplus(-pi)
    let logThetaEps = Foundation.log(theta + eps), logThetaMuEps = Foundation.log(theta + mu + eps)
    let piThetaLog = -pi + theta * (logThetaEps - logThetaMuEps)
    if x < eps {
        let value = LibmMath.softplus(piThetaLog) - softplusPi
        guard gradient else { return (value, 0, 0, 0) }
        let w = LibmMath.sigmoid(piThetaLog)
        return (value, -w * theta / (theta + mu + eps),
                w * (logThetaEps - logThetaMuEps + theta / (theta + eps) - theta / (theta + mu + eps)),
                LibmMath.sigmoid(-pi) - w)
    }
    let value = -softplusPi + piThetaLog + x * (Foundation.log(mu + eps) - logThetaMuEps)
        + LibmMath.logGamma(x + theta) - LibmMath.logGamma(theta) - LibmMath.logGamma(x + 1)
    guard gradient else { return (value, 0, 0, 0) }
    let dMu = x / (mu + eps) - (theta + x) / (theta + mu + eps)
    let dTheta = logThetaEps - logThetaMuEps + theta / (theta + eps) - (theta + x) / (theta + mu + eps)
        + LibmMath.digamma(x + theta) - LibmMath.digamma(theta)
    return (value, dMu, dTheta, -LibmMath.sigmoid(pi))
}

/// The negative binomial of scVI: mean μ = ℓ·softmax(l), inverse dispersion
/// θ = exp(log θ) from head 1 (`*_dispersion`; per feature, per feature and
/// covariate, or per sample, as the model's `--dispersion` says).
public struct NegativeBinomialLikelihood: CountLikelihoodComponent {
    public static let name = "negative-binomial"
    public static let summary = "negative binomial counts (scVI): mean = library size × softmax of the logits, dispersion θ"

    public init() {}

    public var outputsPerDimension: Int { 2 }
    public var auxiliaryHeadName: String { "dispersion" }
    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        countRows(x, parameters, rows: rows, terms: terms, gradient: gradient) { c, mu, theta, _, wantGradient in
            let p = logNegativeBinomial(c, mu: mu, theta: theta, gradient: wantGradient)
            return (p.value, p.dMu, p.dTheta, 0)
        }
    }

}

/// The zero-inflated negative binomial of scVI: the NB above, and dropout
/// logits π from head 2 (`*_dispersion_dropout`: θ's plane, then π's).
public struct ZeroInflatedNegativeBinomialLikelihood: CountLikelihoodComponent {
    public static let name = "zinb"
    public static let summary = "zero-inflated negative binomial counts (scVI): the NB, and dropout logits from the decoder"

    public init() {}

    public var outputsPerDimension: Int { 3 }
    public var auxiliaryHeadName: String { "dispersion_dropout" }
    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        countRows(x, parameters, rows: rows, terms: terms, gradient: gradient) { c, mu, theta, pi, wantGradient in
            let p = logZeroInflatedNegativeBinomial(c, mu: mu, theta: theta, pi: pi, gradient: wantGradient)
            return (p.value, p.dMu, p.dTheta, p.dPi)
        }
    }

    /// The NB's share, times the probability of no dropout.
    public func mean(_ output: DecoderOutput) -> Tensor {
        let shares = countShares(output)
        let (rows, width) = (output.location.shape[0], output.location.shape[0] == 0 ? 0 : output.location.count / output.location.shape[0])
        return Tensor(shape: shares.shape) { out in
            for b in 0..<rows {
                for j in 0..<width {
                    let pi = Double(output.auxiliary.scalars[(b * 2 + 1) * width + j])
                    out[b * width + j] = Float(Double(shares.scalars[b * width + j]) * LibmMath.sigmoid(-pi))
                }
            }
        }
    }
}

extension CountLikelihoodComponent {
    /// The NB-family kernels: per row, μ = ℓ·softmax(l), θ = exp(clamped log θ)
    /// (head 1), π (head 2, when there is one); `logP(x, μ, θ, π, gradient)`
    /// gives log p and its derivatives with respect to μ, θ and π.
    func countRows(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int, terms: UnsafeMutablePointer<Float>,
                   gradient: MutableParameterPlanes?,
                   _ logP: (Double, Double, Double, Double, Bool) -> (Double, Double, Double, Double)) {
        let width = parameters.width, heads = parameters.count
        var s = [Float](repeating: 0, count: width), a = [Double](repeating: 0, count: width)
        for row in 0..<rows {
            let l = parameters.plane(0, row: row), rawTheta = parameters.plane(1, row: row)
            let pis = heads > 2 ? parameters.plane(2, row: row) : nil
            let xs = x + row * width, out = terms + row * width
            _ = rowSoftmax(l, width: width, into: &s)
            var library = 0.0
            for j in 0..<width { library += Self.count(xs[j]) }
            let g = gradient.map { ($0.plane(0, row: row), $0.plane(1, row: row), heads > 2 ? $0.plane(2, row: row) : nil) }
            var weighted = 0.0
            for j in 0..<width {
                let c = Self.count(xs[j]), mu = library * Double(s[j])
                let r = Double(rawTheta[j])
                let clamped = Swift.min(Swift.max(r, logDispersionRange.lowerBound), logDispersionRange.upperBound)
                let theta = Foundation.exp(clamped)
                let p = logP(c, mu, theta, pis.map { Double($0[j]) } ?? 0, g != nil)
                out[j] = Float(-p.0)
                if let g {
                    a[j] = -p.1                                   // ∂(−log p)/∂μ
                    weighted += mu * a[j]
                    g.1[j] = logDispersionRange.contains(r) ? Float(-p.2 * theta) : 0
                    g.2?[j] = Float(-p.3)
                }
            }
            if let g {
                for j in 0..<width { g.0[j] = Float(Double(s[j]) * (library * a[j] - weighted)) }
            }
        }
    }

    /// softmax of head 0, per row: each feature's share of the row's counts.
    func countShares(_ output: DecoderOutput) -> Tensor {
        let rows = output.location.shape[0], width = rows == 0 ? 0 : output.location.count / rows
        return Tensor(shape: output.location.shape) { out in
            output.location.scalars.withUnsafeBufferPointer { l in
                for b in 0..<rows { _ = rowSoftmax(l.baseAddress! + b * width, width: width, into: out.baseAddress! + b * width) }
            }
        }
    }

    /// One count per row, its feature drawn from softmax(l) (draw 0 of the row's first element).
    func oneCountDraw(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let shares = countShares(output)
        let rows = output.location.shape[0], width = rows == 0 ? 0 : output.location.count / rows
        return Tensor(shape: output.location.shape) { out in
            out.initialize(repeating: 0)
            for b in 0..<rows where width > 0 {
                var u = uniforms(b * width, 0), chosen = width - 1
                for j in 0..<width {
                    let p = shares.scalars[b * width + j]
                    if u < p { chosen = j; break }
                    u -= p
                }
                out[b * width + chosen] = 1
            }
        }
    }
}
