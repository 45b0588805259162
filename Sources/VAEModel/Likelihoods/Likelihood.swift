import _Differentiation
import Foundation
import TensorCore

// The observation model p(x | z) as a component. Each likelihood is one
// type in one file of this folder, conforming to `LikelihoodComponent`;
// `Likelihood` below holds one of them as a Codable value and lists them
// all (`Likelihood.components`). Nothing outside this folder switches over
// likelihoods: the decoder sizes its heads from `outputsPerDimension`, data
// are checked by `accepts`, batches reach the likelihood in the
// representation it asks for (`targets`), and training, evaluation and
// scoring all go through `negativeLogLikelihood` below.
//
// Legend: B batch, D data dimensions, P parameters per dimension, K levels.

/// What data a likelihood models.
public enum DataDomain: String, Sendable {
    /// Values in [0, 1]: floats, or integer levels 0…K−1 scaled by 1/(K−1).
    case unitInterval = "values in [0, 1]"
    /// Integer levels 0…K−1 (8-bit images: K = 256), seen as integers.
    case levels = "integer levels 0…K−1"
    /// Any finite values.
    case reals = "finite real values"
    /// Non-negative integers without an upper bound.
    case counts = "counts (non-negative integers)"
}

/// The knobs of likelihoods that the command line sets; each component
/// declares the ones it takes (`LikelihoodComponent.settings`).
public struct LikelihoodSettings: Equatable, Sendable {
    /// σ of the fixed-variance Gaussian.
    public var sigma: Double?
    /// Components of a discretized logistic mixture.
    public var mixtures: Int?

    public init(sigma: Double? = nil, mixtures: Int? = nil) {
        self.sigma = sigma
        self.mixtures = mixtures
    }

    /// The settings given (not nil), for "applies only to …" refusals.
    public var given: [LikelihoodSetting] {
        LikelihoodSetting.allCases.filter { setting in
            switch setting {
            case .sigma: return sigma != nil
            case .mixtures: return mixtures != nil
            }
        }
    }
}

public enum LikelihoodSetting: String, CaseIterable, Sendable {
    case sigma
    case mixtures
}

/// One likelihood: its decoder heads, the data it accepts, its
/// differentiable negative log-likelihood, its mean and samples, and (if
/// discrete) the probability of every level.
public protocol LikelihoodComponent: Codable, Equatable, Sendable, CustomStringConvertible {
    /// The name in configurations and on the command line ("bernoulli").
    static var name: String { get }
    /// One line for --help.
    static var summary: String { get }
    /// The settings it takes; others given are refused, naming it.
    static var settings: [LikelihoodSetting] { get }
    /// The likelihood with these settings (checked: a bad value throws
    /// `InvalidSetting` naming it).
    init(settings: LikelihoodSettings) throws
    /// The rules of its values, for settings and for a configuration read
    /// from a checkpoint alike. Throws `InvalidSetting` naming the field.
    func validate() throws

    /// P ≥ 1: the decoder's outputs per data dimension. Head 0 is
    /// `DecoderOutput.location`; heads 1…P−1 are `DecoderOutput.auxiliary`.
    var outputsPerDimension: Int { get }
    /// The auxiliary head's name in checkpoints (`fc4_<name>`,
    /// `dec.deconvN_<name>`), when P > 1.
    var auxiliaryHeadName: String { get }
    /// The data it models, and the representation its targets take.
    var domain: DataDomain { get }
    var targets: TargetRepresentation { get }
    /// K, for a likelihood over levels once it knows the data's (nil otherwise).
    var levels: Int? { get }
    /// This likelihood fitted to a data set's description (a discrete
    /// likelihood takes the data's number of levels).
    func resolved(for data: DataDescription) -> Self
    /// nil if it models this data, else the rule the data breaks (a
    /// sentence to follow "the X likelihood needs …").
    func rule(for data: DataDescription) -> String?
    /// Whether −log₂ p(x) of this data in bits is a code length: a discrete
    /// distribution over the data's values.
    func isCodeLength(for data: DataDescription) -> Bool

    /// Writes −log p(x_bd | parameters) of every element of `rows` rows to
    /// `terms` (B·D, row-major) and, when `gradient` is given, its
    /// derivative with respect to each parameter.
    func negativeLogLikelihood(_ x: UnsafePointer<Float>, _ parameters: ParameterPlanes, rows: Int,
                               terms: UnsafeMutablePointer<Float>, gradient: MutableParameterPlanes?)
    /// E[x | parameters] (B, D), in the scaled representation (pictures,
    /// reconstructions).
    func mean(_ output: DecoderOutput) -> Tensor
    /// One draw x ~ p(x | parameters) (B, D), in the scaled representation;
    /// `uniforms(e, d)` is draw d of element e (row-major), as many as the
    /// sampler needs.
    func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor
    /// A discrete likelihood: the probability of each of the K levels of
    /// every element, (B·D·K) in Double; nil for continuous ones.
    func levelProbabilities(_ output: DecoderOutput) -> [Double]?
    /// A discrete likelihood: the CDF of one element over its K levels,
    /// P(X < k) for k = 0…K (K + 1 values, from 0 to 1), from the element's P
    /// parameters (head 0 first), in the arithmetic of `M` (the codec runs it
    /// on portable math, so that every machine computes the same values);
    /// nil for continuous ones.
    func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]?
}

extension LikelihoodComponent {
    public var outputsPerDimension: Int { 1 }
    public var auxiliaryHeadName: String { "aux" }
    public var targets: TargetRepresentation { domain == .levels || domain == .counts ? .levels : .scaled }
    public var levels: Int? { nil }
    public func resolved(for data: DataDescription) -> Self { self }
    public func validate() throws {}
    public func levelProbabilities(_ output: DecoderOutput) -> [Double]? { nil }
    public func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]? { nil }
    public var description: String { Self.name }

    /// The rule of its domain.
    public func rule(for data: DataDescription) -> String? {
        switch domain {
        case .unitInterval:
            return data.range.lowerBound >= 0 && data.range.upperBound <= 1 ? nil
                : "values in [0, 1]; the values range over [\(data.range.lowerBound), \(data.range.upperBound)] "
                    + "(use a Gaussian likelihood, or scale the data)"
        case .levels:
            guard let k = data.levels else {
                return "integer levels 0…K−1 (8-bit images, or integer arrays with their number of levels); "
                    + "the values are real (\(data.storage))"
            }
            if let own = levels, own != k { return "\(own) levels; the data has \(k)" }
            return nil
        case .reals:
            return nil
        case .counts:
            if data.range.lowerBound < 0 {
                return "non-negative integer counts; the values (\(data.storage)) go down to \(data.range.lowerBound)"
            }
            return data.integral ? nil : "non-negative integer counts; the values (\(data.storage)) are not all whole numbers"
        }
    }

    public func isCodeLength(for data: DataDescription) -> Bool {
        domain == .levels && data.levels != nil
    }

    fileprivate func isEqual(to other: any LikelihoodComponent) -> Bool {
        (other as? Self) == self
    }
}

/// The parameters a likelihood reads, as P planes per row: plane 0 is the
/// decoder's `location` (B, D), planes 1…P−1 its `auxiliary` (B, (P−1)·D),
/// parameter-major within each row.
public struct ParameterPlanes {
    public let width: Int
    public let count: Int
    @usableFromInline let location: UnsafePointer<Float>
    @usableFromInline let auxiliary: UnsafePointer<Float>?

    public init(width: Int, count: Int, location: UnsafePointer<Float>, auxiliary: UnsafePointer<Float>?) {
        self.width = width
        self.count = count
        self.location = location
        self.auxiliary = auxiliary
    }

    /// Parameter k of row b: D values.
    @inlinable @inline(__always)
    public func plane(_ k: Int, row b: Int) -> UnsafePointer<Float> {
        k == 0 ? location + b * width : auxiliary! + (b * (count - 1) + k - 1) * width
    }
}

/// `ParameterPlanes` to write gradients into.
public struct MutableParameterPlanes {
    public let width: Int
    public let count: Int
    @usableFromInline let location: UnsafeMutablePointer<Float>
    @usableFromInline let auxiliary: UnsafeMutablePointer<Float>?

    public init(width: Int, count: Int, location: UnsafeMutablePointer<Float>, auxiliary: UnsafeMutablePointer<Float>?) {
        self.width = width
        self.count = count
        self.location = location
        self.auxiliary = auxiliary
    }

    @inlinable @inline(__always)
    public func plane(_ k: Int, row b: Int) -> UnsafeMutablePointer<Float> {
        k == 0 ? location + b * width : auxiliary! + (b * (count - 1) + k - 1) * width
    }
}

/// Why a likelihood cannot be made, or cannot model some data.
public enum LikelihoodError: Error, CustomStringConvertible, Equatable {
    case unknown(name: String, known: [String])
    /// A setting given for a likelihood that does not take it.
    case settingNotApplicable(LikelihoodSetting, likelihood: String, takenBy: [String])
    /// Data outside the likelihood's domain: `rule` says what it needs.
    case unsuitableData(likelihood: String, source: String, rule: String)

    public var description: String {
        switch self {
        case let .unknown(name, known):
            return "unknown likelihood \"\(name)\" (known: \(known.joined(separator: ", ")))"
        case let .settingNotApplicable(setting, likelihood, takenBy):
            return "\(setting.rawValue) applies to the \(takenBy.joined(separator: " and ")) likelihood"
                + "\(takenBy.count == 1 ? "" : "s"), not to \(likelihood)"
        case let .unsuitableData(likelihood, source, rule):
            return "\(source): the \(likelihood) likelihood needs \(rule)"
        }
    }
}

/// The observation model of an architecture, as a value: one of
/// `components`. Codable as `{"type": "bernoulli"}`, `{"type": "gaussian",
/// "sigma": 0.5}`, `{"type": "discretized-logistic", "levels": 256,
/// "mixtures": 1}`, ….
public struct Likelihood: Equatable, Sendable, CustomStringConvertible {
    public let component: any LikelihoodComponent

    public init(_ component: any LikelihoodComponent) { self.component = component }

    /// Every likelihood vae-mpi has. A new one is a file in this folder and a line here.
    public static let components: [any LikelihoodComponent.Type] = [
        BernoulliLikelihood.self, GaussianLikelihood.self, LearnedGaussianLikelihood.self,
        DiscretizedLogisticLikelihood.self, BetaBinomialLikelihood.self, StudentTLikelihood.self,
        MultinomialLikelihood.self, PoissonLikelihood.self, NegativeBinomialLikelihood.self,
        ZeroInflatedNegativeBinomialLikelihood.self,
    ]

    public static var names: [String] { components.map { $0.name } }

    /// The likelihood called `name`, with `settings` (those it does not take must be absent).
    public init(named name: String, settings: LikelihoodSettings = LikelihoodSettings()) throws {
        guard let type = Self.components.first(where: { $0.name == name }) else {
            throw LikelihoodError.unknown(name: name, known: Self.names)
        }
        for setting in settings.given where !type.settings.contains(setting) {
            throw LikelihoodError.settingNotApplicable(
                setting, likelihood: name, takenBy: Self.components.filter { $0.settings.contains(setting) }.map { $0.name })
        }
        self.init(try type.init(settings: settings))
    }

    public static let bernoulli = Likelihood(BernoulliLikelihood())
    public static let gaussianLearned = Likelihood(LearnedGaussianLikelihood())
    public static func gaussian(sigma: Double) -> Likelihood { Likelihood(GaussianLikelihood(sigma: sigma)) }

    public static func == (lhs: Likelihood, rhs: Likelihood) -> Bool { lhs.component.isEqual(to: rhs.component) }

    public var name: String { type(of: component).name }
    public var description: String { component.description }
    public var outputsPerDimension: Int { component.outputsPerDimension }
    /// P − 1, the auxiliary head's outputs per data dimension.
    public var auxiliaryOutputs: Int { component.outputsPerDimension - 1 }
    public var auxiliaryHeadName: String { component.auxiliaryHeadName }
    public var domain: DataDomain { component.domain }
    public var targets: TargetRepresentation { component.targets }
    public var levels: Int? { component.levels }
    public func validate() throws { try component.validate() }
    public func resolved(for data: DataDescription) -> Likelihood { Likelihood(component.resolved(for: data)) }
    public func isCodeLength(for data: DataDescription) -> Bool { component.isCodeLength(for: data) }

    /// Refuses data outside the likelihood's domain, naming the file and the rule.
    public func check(_ data: DataDescription) throws {
        if let rule = component.rule(for: data) {
            throw LikelihoodError.unsuitableData(likelihood: name, source: data.source, rule: rule)
        }
    }

    public func mean(_ output: DecoderOutput) -> Tensor { component.mean(output) }
    public func sample(_ output: DecoderOutput, uniforms: ElementUniforms) -> Tensor { component.sample(output, uniforms: uniforms) }
    public func levelProbabilities(_ output: DecoderOutput) -> [Double]? { component.levelProbabilities(output) }
    public func levelCDF<M: ScalarMath>(_ parameters: [M.Value], _ math: M.Type) -> [M.Value]? {
        component.levelCDF(parameters, math)
    }
    /// Whether the likelihood is a distribution over integer levels (`levelCDF` gives it).
    public var isDiscrete: Bool {
        component.levelCDF([Double](repeating: 0, count: outputsPerDimension), LibmMath.self) != nil
    }

    /// −log p(x | output) of every element (B·D, row-major) and, if asked,
    /// its gradient with respect to the decoder's outputs; with a `mask`
    /// (B, D: 1 observed, 0 missing), missing elements add nothing and get no
    /// gradient (the observed-data likelihood of MIWAE, Mattei & Frellsen 2019).
    public func elementTerms(_ x: Tensor, given output: DecoderOutput, gradient wantGradient: Bool, mask: Tensor?)
        -> (terms: [Float], gradient: DecoderOutput?)
    {
        var (terms, gradient) = elementTerms(x, given: output, gradient: wantGradient)
        guard let mask else { return (terms, gradient) }
        precondition(mask.count == terms.count, "\(name) likelihood: a mask of \(mask.shape) for targets \(x.shape)")
        let b = x.shape[0], d = b == 0 ? 0 : x.count / b
        for i in 0..<terms.count { terms[i] *= mask.scalars[i] }
        if var g = gradient {
            g.location = g.location.zipMap(mask, *)
            if !g.auxiliary.isSymbolicZero {
                let p1 = outputsPerDimension - 1
                g.auxiliary = Tensor(shape: g.auxiliary.shape) { out in
                    for r in 0..<b {
                        for k in 0..<p1 {
                            for j in 0..<d {
                                let at = (r * p1 + k) * d + j
                                out[at] = g.auxiliary.scalars[at] * mask.scalars[r * d + j]
                            }
                        }
                    }
                }
            }
            gradient = g
        }
        return (terms, gradient)
    }

    public func elementTerms(_ x: Tensor, given output: DecoderOutput, gradient wantGradient: Bool)
        -> (terms: [Float], gradient: DecoderOutput?)
    {
        let b = x.shape[0], d = b == 0 ? 0 : x.count / b, p = outputsPerDimension
        precondition(output.location.count == b * d && output.auxiliary.count == b * (p - 1) * d,
                     "\(name) likelihood: targets \(x.shape), decoder outputs \(output.location.shape) and "
                        + "\(output.auxiliary.shape) for \(p) parameters per dimension")
        var terms = [Float](unsafeUninitializedCapacity: b * d) { _, n in n = b * d }
        var gradient: DecoderOutput? = nil
        x.scalars.withUnsafeBufferPointer { xs in
            output.location.scalars.withUnsafeBufferPointer { location in
                output.auxiliary.scalars.withUnsafeBufferPointer { auxiliary in
                    let planes = ParameterPlanes(width: d, count: p, location: location.baseAddress ?? UnsafePointer(bitPattern: 8)!,
                                                 auxiliary: auxiliary.baseAddress)
                    terms.withUnsafeMutableBufferPointer { t in
                        guard let xBase = xs.baseAddress, let tBase = t.baseAddress else { return }
                        if wantGradient {
                            var dLocation = Tensor(shape: output.location.shape) { _ in }
                            var dAuxiliary = Tensor(shape: output.auxiliary.shape) { _ in }
                            dLocation.scalars.withUnsafeMutableBufferPointer { gl in
                                dAuxiliary.scalars.withUnsafeMutableBufferPointer { ga in
                                    let g = MutableParameterPlanes(width: d, count: p, location: gl.baseAddress!,
                                                                   auxiliary: ga.baseAddress)
                                    component.negativeLogLikelihood(xBase, planes, rows: b, terms: tBase, gradient: g)
                                }
                            }
                            gradient = DecoderOutput(location: dLocation, auxiliary: p > 1 ? dAuxiliary : .zero)
                        } else {
                            component.negativeLogLikelihood(xBase, planes, rows: b, terms: tBase, gradient: nil)
                        }
                    }
                }
            }
        }
        if wantGradient && gradient == nil {
            gradient = DecoderOutput(location: Tensor(zeros: output.location.shape), auxiliary: .zero)
        }
        return (terms, gradient)
    }

    /// −log p(x | output) of each sample (row of x), in nats (of its observed
    /// elements, with a mask).
    public func negativeLogLikelihoodPerSample(_ x: Tensor, given output: DecoderOutput, mask: Tensor? = nil) -> [Double] {
        let b = x.shape[0], d = b == 0 ? 0 : x.count / b
        let terms = elementTerms(x, given: output, gradient: false, mask: mask).terms
        return terms.withUnsafeBufferPointer { t in
            (0..<b).map { r in Double(vectorSum(t.baseAddress! + r * d, count: d)) }
        }
    }
}

extension Likelihood: Codable {
    enum CodingKeys: String, CodingKey { case type }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .type)
        guard let type = Self.components.first(where: { $0.name == name }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: c, debugDescription: "unknown likelihood \"\(name)\" (known: \(Self.names.joined(separator: ", ")))")
        }
        let component = try type.init(from: decoder)
        do {
            try component.validate()
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "\(error)")
        }
        self.init(component)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .type)
        try component.encode(to: encoder)
    }
}

/// −log p(x | output) summed over the batch and dimensions, in nats: the
/// reconstruction term of the objective. `x` is in the likelihood's target
/// representation (`Likelihood.targets`); with a `mask` (B, D), over the
/// observed elements only. The forward pass computes the gradient in the
/// same sweep; the pullback only scales it.
@differentiable(reverse, wrt: output)
public func negativeLogLikelihood(_ x: Tensor, given output: DecoderOutput, under likelihood: Likelihood,
                                  mask: Tensor? = nil) -> Float {
    likelihood.elementTerms(x, given: output, gradient: false, mask: mask).terms.vectorSum()
}

@derivative(of: negativeLogLikelihood, wrt: output)
@usableFromInline
func _vjpNegativeLogLikelihood(_ x: Tensor, given output: DecoderOutput, under likelihood: Likelihood, mask: Tensor?)
    -> (value: Float, pullback: (Float) -> DecoderOutput.TangentVector)
{
    let (terms, gradient) = likelihood.elementTerms(x, given: output, gradient: true, mask: mask)
    let g = gradient!
    return (terms.vectorSum(), { seed in
        seed == 1 ? DecoderOutput.TangentVector(location: g.location, auxiliary: g.auxiliary)
            : DecoderOutput.TangentVector(location: g.location.scaled(by: seed),
                                          auxiliary: g.auxiliary.isSymbolicZero ? .zero : g.auxiliary.scaled(by: seed))
    })
}
