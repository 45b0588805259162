import TensorCore

/// Independent Bernoulli per dimension (Kingma & Welling 2014; PyTorch's
/// example VAE): the decoder emits logits l, and
/// −log p(x | l) = max(l, 0) − l·x + log(1 + e^−|l|), the binary
/// cross-entropy from logits, for x in [0, 1]. On 0/1 data (2 levels) it is
/// a discrete distribution and −log₂ p a code length; on gray levels it is
/// the cross-entropy the PyTorch example trains with, which is not.
public struct BernoulliLikelihood: LikelihoodComponent {
    public static let name = "bernoulli"
    public static let summary = "Bernoulli per dimension, from logits (data in [0, 1])"
    public static let settings: [LikelihoodSetting] = []

    public init() {}
    public init(settings: LikelihoodSettings) throws {}

    public var domain: DataDomain { .unitInterval }

    public func isCodeLength(for data: DataDescription) -> Bool { data.levels == 2 }

    /// One element's loss given t = e^−|l|.
    @inline(__always)
    static func term(_ l: Float, _ x: Float, _ t: Float) -> Float {
        Swift.max(l, 0) - l * x + fastLog1p(t)
    }

    /// One sweep: each element's loss and, if asked, ∂/∂l = σ(l) − x.
    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        let n = rows * parameters.width
        let l = parameters.plane(0, row: 0)
        if let gradient {
            let g = gradient.plane(0, row: 0)
            for i in 0..<n {
                let t = fastExp(-Swift.abs(l[i]))
                terms[i] = Self.term(l[i], x[i], t)
                g[i] = (l[i] >= 0 ? 1 / (1 + t) : t / (1 + t)) - x[i]
            }
        } else {
            for i in 0..<n { terms[i] = Self.term(l[i], x[i], fastExp(-Swift.abs(l[i]))) }
        }
    }

    /// σ(l).
    public func mean(_ output: DecoderOutput) -> Tensor { sigmoid(output.location) }

    /// 1 where u < σ(l), else 0.
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor {
        let p = sigmoid(output.location)
        return Tensor(shape: p.shape) { out in
            for i in 0..<out.count { out[i] = uniforms(i, 0) < p.scalars[i] ? 1 : 0 }
        }
    }

    /// [0, 1 − σ(l), 1]: levels 0 and 1.
    @_specialize(where M == PortableMath)
    @_specialize(where M == LibmMath)
    public func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]? {
        [0, M.sigmoid(-parameters[0]), 1]
    }

    /// [1 − σ(l), σ(l)] per element, in Double.
    public func levelProbabilities(_ output: DecoderOutput) -> [Double]? {
        output.location.scalars.flatMap { l -> [Double] in
            let p = LibmMath.sigmoid(Double(l))
            return [1 - p, p]
        }
    }
}
