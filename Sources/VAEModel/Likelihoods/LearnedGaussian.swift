import TensorCore

/// Independent Gaussian per dimension with a per-dimension variance from a
/// second decoder head (log σ², clamped to `logVarianceRange`):
/// −log N(x; μ, e^v) = ½ [(x − μ)² e^−v + v] + ½ log 2π.
public struct LearnedGaussianLikelihood: LikelihoodComponent {
    public static let name = "gaussian-learned"
    public static let summary = "Gaussian per dimension with a learned variance (a second decoder head)"
    public static let settings: [LikelihoodSetting] = []

    /// σ from e^−4.5 ≈ 0.011 to e^4.5 ≈ 90. Outside it the likelihood of data
    /// in [0, 1] can grow without bound (σ → 0 on constant pixels) or
    /// vanish; the clamp's gradient is zero outside, as for `torch.clamp`.
    public static let logVarianceRange: ClosedRange<Float> = -9 ... 9

    public init() {}
    public init(settings: LikelihoodSettings) throws {}

    public var outputsPerDimension: Int { 2 }
    /// `fc4_logvar`, `dec.deconvN_logvar`.
    public var auxiliaryHeadName: String { "logvar" }
    public var domain: DataDomain { .reals }

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let range = Self.logVarianceRange
        let d = parameters.width
        for b in 0..<rows {
            let m = parameters.plane(0, row: b), v = parameters.plane(1, row: b)
            let xs = x + b * d, t = terms + b * d
            for i in 0..<d {
                let lv = Swift.min(Swift.max(v[i], range.lowerBound), range.upperBound)
                let r = xs[i] - m[i]
                t[i] = 0.5 * (r * r * fastExp(-lv) + lv) + halfLogTwoPi
            }
            guard let gradient else { continue }
            let dm = gradient.plane(0, row: b), dv = gradient.plane(1, row: b)
            for i in 0..<d {
                let inside = v[i] >= range.lowerBound && v[i] <= range.upperBound
                let lv = Swift.min(Swift.max(v[i], range.lowerBound), range.upperBound)
                let r = xs[i] - m[i]
                let w = fastExp(-lv)
                dm[i] = -r * w                                  // ∂/∂μ = (μ − x) e^−v
                dv[i] = inside ? 0.5 * (1 - r * r * w) : 0      // ∂/∂v = ½ (1 − (x − μ)² e^−v)
            }
        }
    }

    public func mean(_ output: DecoderOutput) -> Tensor { output.location }

    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let range = Self.logVarianceRange
        return Tensor(shape: output.location.shape) { out in
            for i in 0..<out.count {
                let lv = Swift.min(Swift.max(output.auxiliary.scalars[i], range.lowerBound), range.upperBound)
                out[i] = output.location.scalars[i] + fastExp(0.5 * lv) * standardNormal(uniforms(i, 0), uniforms(i, 1))
            }
        }
    }
}
