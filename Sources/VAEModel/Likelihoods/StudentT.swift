import Foundation
import TensorCore

/// Student's t per dimension (what MIWAE uses for tables; Mattei & Frellsen
/// 2019): the decoder gives a location μ and raw scale and degrees of
/// freedom r_s, r_ν, floored as in the authors' notebooks: s = softplus(r_s)
/// + 0.001, ν = softplus(r_ν) + 3 (so the mean exists and is μ). With
/// t = (x − μ)/s,
///
///   log p(x) = log Γ((ν+1)/2) − log Γ(ν/2) − ½ log(νπ) − log s − (ν+1)/2 · log(1 + t²/ν).
///
/// Computed in Double (log Γ and ψ by `ScalarMath`), stored in Float.
public struct StudentTLikelihood: LikelihoodComponent {
    public static let name = "student-t"
    public static let summary = "Student's t per dimension with a learned scale and degrees of freedom (reals)"
    public static let settings: [LikelihoodSetting] = []
    public static let scaleFloor = 0.001
    public static let degreesOfFreedomFloor = 3.0

    public init() {}
    public init(settings: LikelihoodSettings) throws {}

    public var outputsPerDimension: Int { 3 }
    /// `fc4_scale_df`: the raw scale's plane, then the raw degrees of freedom's.
    public var auxiliaryHeadName: String { "scale_df" }
    public var domain: DataDomain { .reals }

    /// (s, ν) and their derivatives with respect to the raw outputs.
    @inline(__always)
    static func shape(_ rawScale: Double, _ rawDegrees: Double) -> (s: Double, nu: Double, ds: Double, dnu: Double) {
        (LibmMath.softplus(rawScale) + scaleFloor, LibmMath.softplus(rawDegrees) + degreesOfFreedomFloor,
         LibmMath.sigmoid(rawScale), LibmMath.sigmoid(rawDegrees))
    }

    /// log p(x) and its derivatives with respect to μ, s and ν.
    @inline(__always)
    static func logDensity(_ x: Double, mu: Double, s: Double, nu: Double, gradient: Bool)
        -> (value: Double, dMu: Double, dS: Double, dNu: Double)
    {
        let t = (x - mu) / s, t2 = t * t
        let value = LibmMath.logGamma(0.5 * (nu + 1)) - LibmMath.logGamma(0.5 * nu) - 0.5 * Foundation.log(nu * Double.pi)
            - Foundation.log(s) - 0.5 * (nu + 1) * Foundation.log1p(t2 / nu)
        guard gradient else { return (value, 0, 0, 0) }
        let r = (nu + 1) / (nu + t2)
        let dMu = r * t / s
        let dS = (r * t2 - 1) / s
        let dNu = 0.5 * (LibmMath.digamma(0.5 * (nu + 1)) - LibmMath.digamma(0.5 * nu)) - 0.5 / nu
            - 0.5 * Foundation.log1p(t2 / nu) + 0.5 * r * t2 / nu
        return (value, dMu, dS, dNu)
    }

    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let width = parameters.width
        for row in 0..<rows {
            let mu = parameters.plane(0, row: row), rs = parameters.plane(1, row: row), rn = parameters.plane(2, row: row)
            let xs = x + row * width, out = terms + row * width
            let g = gradient.map { ($0.plane(0, row: row), $0.plane(1, row: row), $0.plane(2, row: row)) }
            for j in 0..<width {
                let (s, nu, ds, dnu) = Self.shape(Double(rs[j]), Double(rn[j]))
                let p = Self.logDensity(Double(xs[j]), mu: Double(mu[j]), s: s, nu: nu, gradient: g != nil)
                out[j] = Float(-p.value)
                if let g {
                    g.0[j] = Float(-p.dMu)
                    g.1[j] = Float(-p.dS * ds)
                    g.2[j] = Float(-p.dNu * dnu)
                }
            }
        }
    }

    /// μ (the mean: ν ≥ 3).
    public func mean(_ output: DecoderOutput) -> Tensor { output.location }

    /// μ + s·T, T = Z/√(V/ν): Z by Box–Muller (draws 0, 1), V ~ χ²_ν = 2·Gamma(ν/2)
    /// by Marsaglia and Tsang's method (draws 2, 3, …; each attempt takes three).
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let n = output.location.count
        return Tensor(shape: output.location.shape) { out in
            for i in 0..<n {
                let rows = n == 0 ? 0 : output.location.shape[0], width = n / Swift.max(rows, 1)
                let (b, j) = (i / width, i % width)
                let rs = output.auxiliary.scalars[(b * 2) * width + j], rn = output.auxiliary.scalars[(b * 2 + 1) * width + j]
                let (s, nu, _, _) = Self.shape(Double(rs), Double(rn))
                let z = Double(standardNormal(uniforms(i, 0), uniforms(i, 1)))
                let v = 2 * Self.gamma(shape: nu / 2, i, uniforms)
                out[i] = Float(Double(output.location.scalars[i]) + s * z / (v / nu).squareRoot())
            }
        }
    }

    /// A Gamma(a, 1) draw, a ≥ 1.5 here, by Marsaglia & Tsang (2000): d = a − ⅓,
    /// c = 1/√(9d); x normal, v = (1 + cx)³; accept if log u < ½x² + d − dv + d log v.
    static func gamma(shape a: Double, _ element: Int, _ uniforms: ElementUniforms) -> Double {
        let d = a - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        var draw = 2
        while draw + 2 < ElementUniforms.drawsPerElement {
            let x = Double(standardNormal(uniforms(element, draw), uniforms(element, draw + 1)))
            let u = Double(uniforms(element, draw + 2))
            draw += 3
            let t = 1 + c * x
            guard t > 0 else { continue }
            let v = t * t * t
            if Foundation.log(u) < 0.5 * x * x + d - d * v + d * Foundation.log(v) { return d * v }
        }
        return a   // 21 rejections in a row (probability below 1e−27): the mean.
    }

    enum CodingKeys: CodingKey {}
}
