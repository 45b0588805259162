import Foundation
import TensorCore

/// A mixture of N discretized logistics per dimension over K integer levels
/// (Kingma et al. 2016, IAF; Salimans et al. 2017, PixelCNN++): level k has
/// the bin [c − h, c + h] with centre c = k/(K−1) and half-width
/// h = 1/(2(K−1)); the end bins are open to −∞ and +∞, so the K
/// probabilities sum to 1 exactly.
///
/// The decoder gives, per dimension, N locations μ_i, N log-scales t_i and
/// (for N > 1) N mixture logits π_i, in that order of heads. The log-scale
/// is clamped to `logScaleRange` (zero gradient outside it and on its ends, as
/// `torch.clamp`).
///
/// Stability: every bin's log-mass is computed in log space, with
/// a = (c + h − μ)/s, b = (c − h − μ)/s and d = a − b = 2h/s:
/// - first bin: log σ(a); last bin: log σ(−b) (softplus forms);
/// - a bin below μ (a ≤ 0) or above it (b ≥ 0):
///   log(σ(a) − σ(b)) = b + log(e^d − 1) − softplus(a) − softplus(b),
///   exact for any a > b (no 1e-5 threshold and midpoint density, as in
///   PixelCNN++'s code, is needed);
/// - a bin that holds μ (b < 0 < a): log1p(−σ(−a) − σ(b)).
/// The mixture is a logsumexp over log-softmax weights. No floor on bin
/// mass is applied: a bin's log-mass stays finite however far μ is from it
/// (about −|c − μ|/s), so nothing underflows to −∞; the only bound is the
/// clamp on log s, which keeps s ≥ e^−9 (a single component can then put
/// 1 − 2.5e−7 of its mass in one 8-bit bin). Training computes in Float:
/// a bin's centre k/(K−1) rounds to about 3e−8, which moves its log-mass by
/// about 3e−8/s (at most ~3e−4 nats at the clamp); evaluation of the level
/// probabilities is in Double.
public struct DiscretizedLogisticLikelihood: LikelihoodComponent {
    public static let name = "discretized-logistic"
    public static let summary = "discretized logistic mixture over integer levels (--logistic-mixtures N, default 1)"
    public static let settings: [LikelihoodSetting] = [.mixtures]
    public static let mixtureRange = 1...32
    /// The clamp on log s, for data scaled to [0, 1] (bins of width 1/(K−1)).
    public static let logScaleRange: ClosedRange<Float> = -9 ... 7

    /// N.
    public var mixtures: Int
    /// K, once known from the data (nil until the run has seen it).
    public var levelCount: Int?

    public init(mixtures: Int = 1, levels: Int? = nil) {
        self.mixtures = mixtures
        levelCount = levels
    }

    public init(settings: LikelihoodSettings) throws {
        self.init(mixtures: settings.mixtures ?? 1)
        try validate()
    }

    public func validate() throws {
        try InvalidSetting.check("mixtures", mixtures, in: Self.mixtureRange)
        if let k = levelCount { try InvalidSetting.check("levels", k, in: 2...65536) }
    }

    public var outputsPerDimension: Int { mixtures == 1 ? 2 : 3 * mixtures }
    /// `fc4_logscale` (one component), `fc4_mixture` (several).
    public var auxiliaryHeadName: String { mixtures == 1 ? "logscale" : "mixture" }
    public var domain: DataDomain { .levels }
    public var levels: Int? { levelCount }
    public var description: String {
        "discretized-logistic" + (mixtures > 1 ? ", \(mixtures) components" : "") + (levelCount.map { ", \($0) levels" } ?? "")
    }

    public func resolved(for data: DataDescription) -> DiscretizedLogisticLikelihood {
        DiscretizedLogisticLikelihood(mixtures: mixtures, levels: levelCount ?? data.levels)
    }

    // MARK: - One component's bin

    /// log P(level) of one logistic component and its derivatives with
    /// respect to μ and the clamped log-scale t. `c` is the bin centre,
    /// `h` the half-width; `first`/`last` mark the open end bins.
    @inline(__always)
    static func logBinMass<M: ScalarMath>(centre c: M.Value, halfWidth h: M.Value, first: Bool, last: Bool,
                                          location mu: M.Value, logScale t: M.Value, _: M.Type)
        -> (value: M.Value, dLocation: M.Value, dLogScale: M.Value)
    {
        let inverseScale = M.exp(-t)
        // The bin's edges relative to μ: c − μ first, so that a bin centred on μ gives a = −b exactly.
        let centred = c - mu
        let a = (centred + h) * inverseScale, b = (centred - h) * inverseScale
        if first && last { return (0, 0, 0) }
        if first {
            // log σ(a); ∂/∂a = σ(−a)
            let g = M.sigmoid(-a)
            return (M.logSigmoid(a), -inverseScale * g, -a * g)
        }
        if last {
            // log σ(−b); ∂/∂b = −σ(b)
            let g = M.sigmoid(b)
            return (M.logSigmoid(-b), inverseScale * g, b * g)
        }
        if b < 0 && a > 0 {
            // The bin holds μ: P = 1 − σ(−a) − σ(b); ∂log P/∂a = σ(a)σ(−a)/P, ∂/∂b = −σ(b)σ(−b)/P.
            let sa = M.sigmoid(-a), sb = M.sigmoid(b)
            let mass = 1 - sa - sb
            let value = M.log1p(-sa - sb)
            let da = sa * (1 - sa) / mass, db = -sb * (1 - sb) / mass
            return (value, -inverseScale * (da + db), -a * da - b * db)
        }
        // Below or above μ: log P = b + log(e^d − 1) − softplus(a) − softplus(b), with
        // ∂/∂a = −σ(a), ∂/∂b = σ(−b), ∂/∂d = 1/(1 − e^−d), and d = 2h/s.
        let d = 2 * h * inverseScale
        let value = b + M.logExpm1(d) - M.softplus(a) - M.softplus(b)
        let da = -M.sigmoid(a), db = M.sigmoid(-b)
        return (value, -inverseScale * (da + db), -a * da - b * db - M.dOverOneMinusExpMinus(d))
    }

    // MARK: - The kernel

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let k = levelCount ?? 256
        let n = mixtures, width = parameters.width
        let scale = 1 / Float(k - 1), h = 0.5 / Float(k - 1)
        let range = Self.logScaleRange
        let last = Float(k - 1)
        var f = [Float](repeating: 0, count: n), dmu = f, dt = f, logWeight = f
        for row in 0..<rows {
            let xs = x + row * width, out = terms + row * width
            let heads = (0..<parameters.count).map { parameters.plane($0, row: row) }
            let gradients = gradient.map { g in (0..<g.count).map { g.plane($0, row: row) } }
            for j in 0..<width {
                let level = xs[j]
                let c = level * scale
                var best = -Float.infinity
                // log-softmax of the mixture logits (one component: log 1 = 0)
                if n > 1 {
                    var maxLogit = -Float.infinity
                    for i in 0..<n { maxLogit = Swift.max(maxLogit, heads[2 * n + i][j]) }
                    var total: Float = 0
                    for i in 0..<n { total += fastExp(heads[2 * n + i][j] - maxLogit) }
                    let logTotal = maxLogit + fastLog(total)
                    for i in 0..<n { logWeight[i] = heads[2 * n + i][j] - logTotal }
                }
                for i in 0..<n {
                    let rawT = heads[n + i][j]
                    let t = Swift.min(Swift.max(rawT, range.lowerBound), range.upperBound)
                    let component = Self.logBinMass(centre: c, halfWidth: h, first: level <= 0, last: level >= last,
                                                    location: heads[i][j], logScale: t, FastMath.self)
                    f[i] = component.value + logWeight[i]
                    dmu[i] = component.dLocation
                    dt[i] = rawT > range.lowerBound && rawT < range.upperBound ? component.dLogScale : 0
                    best = Swift.max(best, f[i])
                }
                var logP = f[0]
                if n > 1 {
                    var total: Float = 0
                    for i in 0..<n { total += fastExp(f[i] - best) }
                    logP = best + fastLog(total)
                }
                out[j] = -logP
                guard let gradients else { continue }
                for i in 0..<n {
                    // responsibility r_i = P_i w_i / P; −log P's gradient is −r_i times the component's.
                    let r = n == 1 ? 1 : fastExp(f[i] - logP)
                    gradients[i][j] = -r * dmu[i]
                    gradients[n + i][j] = -r * dt[i]
                    if n > 1 { gradients[2 * n + i][j] = fastExp(logWeight[i]) - r }
                }
            }
        }
    }

    // MARK: - Mean, samples, level probabilities

    /// Parameters of element j of row b: (μ_i, clamped t_i, log w_i) for each component.
    func components(_ output: DecoderOutput, row b: Int, dimension j: Int, width: Int) -> [(mu: Double, t: Double, logWeight: Double)] {
        let n = mixtures, p = outputsPerDimension
        func parameter(_ k: Int) -> Double {
            Double(k == 0 ? output.location.scalars[b * width + j] : output.auxiliary.scalars[(b * (p - 1) + k - 1) * width + j])
        }
        var logits = n > 1 ? (0..<n).map { parameter(2 * n + $0) } : [0]
        let m = logits.max()!
        let logTotal = m + Foundation.log(logits.reduce(0.0) { $0 + Foundation.exp($1 - m) })
        logits = logits.map { $0 - logTotal }
        let range = Self.logScaleRange
        return (0..<n).map { i in
            (parameter(i), Swift.min(Swift.max(parameter(n + i), Double(range.lowerBound)), Double(range.upperBound)), logits[i])
        }
    }

    /// E[level]/(K−1): Σ_i w_i Σ_{j<K−1} (1 − F_i(upper edge of level j)) / (K−1).
    public func mean(_ output: DecoderOutput) -> Tensor {
        let k = levelCount ?? 256, rows = output.location.shape[0], width = rows == 0 ? 0 : output.location.count / rows
        let h = 0.5 / Double(k - 1)
        return Tensor(shape: output.location.shape) { out in
            for b in 0..<rows {
                for j in 0..<width {
                    var mean = 0.0
                    for (mu, t, logWeight) in components(output, row: b, dimension: j, width: width) {
                        let inverseScale = Foundation.exp(-t)
                        // Edges more than 40 scales below μ contribute σ(> 40) = 1 in Double (1 − 4e−18 rounds to
                        // 1), those above contribute < 4e−18: sum the window between, count the levels below.
                        let reach = 40 * Foundation.exp(t), top = Double(k - 1)
                        let first = Swift.max(0, Swift.min(k - 1, Int(((mu - reach - h) * top).rounded(.up))))
                        let last = Swift.max(first, Swift.min(k - 1, Int(((mu + reach - h) * top).rounded(.down)) + 1))
                        // σ(−(c_l − μ)/s) = 1/(1 + E_l), E_l = exp((c_l − μ)/s) = E_first·r^(l − first) with
                        // r = exp(1/((K−1)s)): one exp per element, E within [e^−40, e^40] in the window.
                        var expected = Double(first)
                        var e = Foundation.exp((Double(first) / top + h - mu) * inverseScale)
                        let ratio = Foundation.exp(inverseScale / top)
                        for _ in first..<last {
                            expected += 1 / (1 + e)
                            e *= ratio
                        }
                        mean += Foundation.exp(logWeight) * expected
                    }
                    out[b * width + j] = Float(mean / Double(k - 1))
                }
            }
        }
    }

    /// A component by the first uniform, a logistic draw by the second,
    /// rounded to the nearest level (clamped to 0…K−1): exactly a draw from
    /// the discretized mixture.
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let k = levelCount ?? 256, rows = output.location.shape[0], width = rows == 0 ? 0 : output.location.count / rows
        return Tensor(shape: output.location.shape) { out in
            for b in 0..<rows {
                for j in 0..<width {
                    let index = b * width + j
                    let parts = components(output, row: b, dimension: j, width: width)
                    var u = Double(uniforms(index, 0)), chosen = parts[parts.count - 1]
                    for part in parts {
                        let w = Foundation.exp(part.logWeight)
                        if u < w { chosen = part; break }
                        u -= w
                    }
                    let v = Double(uniforms(index, 1))
                    let value = chosen.mu + Foundation.exp(chosen.t) * Foundation.log(v / (1 - v))
                    let level = Swift.min(Swift.max((value * Double(k - 1)).rounded(), 0), Double(k - 1))
                    out[index] = Float(level / Double(k - 1))
                }
            }
        }
    }

    /// P(level) for every level of every element, from the same log-space
    /// bin masses as training, in Double.
    public func levelProbabilities(_ output: DecoderOutput) -> [Double]? {
        let k = levelCount ?? 256, rows = output.location.shape[0], width = rows == 0 ? 0 : output.location.count / rows
        let h = 0.5 / Double(k - 1)
        var probabilities = [Double](repeating: 0, count: rows * width * k)
        for b in 0..<rows {
            for j in 0..<width {
                let parts = components(output, row: b, dimension: j, width: width)
                for level in 0..<k {
                    var p = 0.0
                    for part in parts {
                        let mass = Self.logBinMass(centre: Double(level) / Double(k - 1), halfWidth: h, first: level == 0,
                                                   last: level == k - 1, location: part.mu, logScale: part.t, LibmMath.self)
                        p += Foundation.exp(mass.value + part.logWeight)
                    }
                    probabilities[(b * width + j) * k + level] = p
                }
            }
        }
        return probabilities
    }

    /// P(X < k) = Σ_i w_i σ((k − ½)/(K−1) − μ_i)/s_i) for 0 < k < K: the
    /// logistics' CDFs at the upper edge of level k − 1. Each component's σ
    /// is computed where its argument lies in [−40, 40] and taken as 0 below
    /// and 1 above (σ(−40) = 4.2e−18: no quantised table can tell), so a
    /// sharp component costs a few exponentials, not K.
    @_specialize(where M == PortableMath)
    @_specialize(where M == LibmMath)
    public func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]? {
        let k = levelCount ?? 256, n = mixtures
        var weights = n > 1 ? Array(parameters[2 * n ..< 3 * n]) : [0]
        let m = weights.max()!
        var total: M.Value = 0
        for i in 0..<weights.count {
            weights[i] = M.exp(weights[i] - m)
            total += weights[i]
        }
        let lower = M.Value(Self.logScaleRange.lowerBound), upper = M.Value(Self.logScaleRange.upperBound)
        var cdf = [M.Value](repeating: 0, count: k + 1)
        let width = M.Value(k - 1)
        for i in 0..<n {
            let w = weights[i] / total, mu = parameters[i]
            let inverseScale = M.exp(-Swift.min(Swift.max(parameters[n + i], lower), upper))
            let scale = 1 / inverseScale
            // Levels whose upper edge lies within 40 scales of μ: edge(level) = (level − ½)/(K − 1).
            let from = Swift.min(Swift.max(((mu - 40 * scale) * width + 0.5).rounded(.up), 1), M.Value(k))
            let to = Swift.min(Swift.max(((mu + 40 * scale) * width + 0.5).rounded(.down), 0), M.Value(k - 1))
            let first = Int(from), last = Int(to)
            if first <= last {
                for level in first...last {
                    cdf[level] += w * M.sigmoid(((M.Value(level) - 0.5) / width - mu) * inverseScale)
                }
            }
            // Above the window the component's CDF is 1.
            if last + 1 <= k - 1 { for level in Swift.max(last + 1, 1)...(k - 1) { cdf[level] += w } }
        }
        cdf[k] = 1
        return cdf
    }

    enum CodingKeys: String, CodingKey { case mixtures, levels }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mixtures = try c.decodeIfPresent(Int.self, forKey: .mixtures) ?? 1
        levelCount = try c.decodeIfPresent(Int.self, forKey: .levels)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mixtures, forKey: .mixtures)
        try c.encodeIfPresent(levelCount, forKey: .levels)
    }
}
