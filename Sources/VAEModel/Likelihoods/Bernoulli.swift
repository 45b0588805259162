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

    /// One sweep: each element's loss and, if asked, ∂/∂l = σ(l) − x, with
    /// t = e^−|l|: max(l, 0) − l·x + log1p(t), and σ(l) = 1/(1 + t) for
    /// l ≥ 0, t/(1 + t) below (a vectorised kernel, `TensorCore`'s
    /// `bernoulliNegativeLogLikelihood`).
    public func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                                      terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?) {
        bernoulliNegativeLogLikelihood(logits: parameters.plane(0, row: 0), targets: x, count: rows * parameters.width,
                                       terms: terms, gradient: gradient?.plane(0, row: 0))
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
