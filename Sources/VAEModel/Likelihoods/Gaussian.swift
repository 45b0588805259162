import Foundation
import TensorCore

/// Independent Gaussian per dimension with a fixed standard deviation σ; the
/// decoder emits the mean μ, and −log N(x; μ, σ²) = ½ (x − μ)²/σ² + ½ log σ² +
/// ½ log 2π, a true negative log-likelihood (the constant included).
public struct GaussianLikelihood: LikelihoodComponent {
    public static let name = "gaussian"
    public static let summary = "Gaussian per dimension with a fixed σ (--sigma, default 1)"
    public static let settings: [LikelihoodSetting] = [.sigma]

    public var sigma: Double

    public init(sigma: Double = 1) { self.sigma = sigma }

    public init(settings: LikelihoodSettings) throws {
        self.init(sigma: settings.sigma ?? 1)
        try validate()
    }

    public func validate() throws {
        try InvalidSetting.require(sigma.isFinite && sigma > 0, "sigma", "must be positive (got \(sigma))")
    }

    public var domain: DataDomain { .reals }
    public var description: String { "gaussian, σ = \(sigma)" }

    /// log σ², as the kernel takes it.
    var logVariance: Float { Float(2 * Foundation.log(sigma)) }

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let n = rows * parameters.width
        let m = parameters.plane(0, row: 0)
        let logVariance = self.logVariance
        let inverseVariance = fastExp(-logVariance)
        let constant = 0.5 * logVariance + halfLogTwoPi
        for i in 0..<n { terms[i] = 0.5 * (x[i] - m[i]) * (x[i] - m[i]) * inverseVariance + constant }
        if let gradient {
            let g = gradient.plane(0, row: 0)
            for i in 0..<n { g[i] = (m[i] - x[i]) * inverseVariance }   // ∂/∂μ = (μ − x)/σ²
        }
    }

    public func mean(_ output: DecoderOutput) -> Tensor { output.location }

    /// μ + σ·ε, ε by Box–Muller from the two uniforms.
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let s = Float(sigma)
        return Tensor(shape: output.location.shape) { out in
            for i in 0..<out.count {
                out[i] = output.location.scalars[i] + s * standardNormal(uniforms(i, 0), uniforms(i, 1))
            }
        }
    }

    enum CodingKeys: String, CodingKey { case sigma }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sigma = try c.decodeIfPresent(Double.self, forKey: .sigma) ?? 1
    }
}

/// ½ log 2π.
public let halfLogTwoPi: Float = 0.918_938_533

/// A standard normal from two uniforms in (0, 1) (Box–Muller).
func standardNormal(_ u1: Float, _ u2: Float) -> Float {
    Float((-2 * Foundation.log(Double(u1))).squareRoot() * Foundation.cos(2 * Double.pi * Double(u2)))
}
