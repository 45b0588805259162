import TensorCore

/// What a model family's options provide. The options value is the
/// family's whole description: its defaults (the options' initial values),
/// its validation against an image shape, its summary and parameter count,
/// and how a model is built from a seed. The likelihood belongs to it.
public protocol ArchitectureOptions: Codable, Equatable, Sendable {
    associatedtype Model: VariationalAutoencoder

    /// The family's name in configurations ("mlp").
    static var family: String { get }
    /// Whether the family models images only (convolutions), or any
    /// D-dimensional vectors (table rows, flattened images).
    static var needsImages: Bool { get }
    /// Z.
    var latentSize: Int { get set }
    var likelihood: Likelihood { get set }
    /// K, the classes of a conditional VAE (Sohn et al. 2015); 0 for an unconditional one.
    var conditionalClasses: Int { get set }
    /// Whether the encoder fills missing inputs with learned constants
    /// (`MissingFill.learned`) rather than zeros.
    var learnedMissingFill: Bool { get set }

    /// Throws `ArchitectureError` when the family cannot model images of this shape.
    func validate(for image: ImageShape) throws
    /// "mlp 784-400-20".
    func summary(for image: ImageShape) -> String
    /// Scalars in every parameter of the model for this image shape.
    func parameterCount(for image: ImageShape) -> Int
    /// A model with PyTorch's default initialisation, drawn from `seed`.
    func makeModel(for image: ImageShape, seed: UInt64) -> Model
    /// These options as an architecture.
    var architecture: Architecture { get }
}

/// A model family and its options. Adding a family means a file with the
/// model and its `Options`, a case here, and its entries in `options` and
/// `families`.
///
/// Codable as the family's options with a `family` key beside them:
/// `{"family": "mlp", "hidden_size": 400, "latent_size": 20, "likelihood": {...}}`.
public enum Architecture: Equatable, Sendable {
    case mlp(MLPVAE.Options)
    case conv(ConvVAE.Options)

    /// Every family, with its default options.
    public static let families: [Architecture] = [.mlp(.init()), .conv(.init())]

    /// The options of this architecture's family.
    public var options: any ArchitectureOptions {
        switch self {
        case .mlp(let o): return o
        case .conv(let o): return o
        }
    }

    /// A family's default architecture, by name (nil for an unknown name).
    public static func defaults(family name: String) -> Architecture? {
        families.first { $0.family == name }
    }

    public static var familyNames: [String] { families.map(\.family) }

    public var family: String { type(of: options).family }
    public var needsImages: Bool { type(of: options).needsImages }

    public var latentSize: Int {
        get { options.latentSize }
        set {
            var o = options
            o.latentSize = newValue
            self = o.architecture
        }
    }

    public var likelihood: Likelihood {
        get { options.likelihood }
        set {
            var o = options
            o.likelihood = newValue
            self = o.architecture
        }
    }

    public var conditionalClasses: Int {
        get { options.conditionalClasses }
        set {
            var o = options
            o.conditionalClasses = newValue
            self = o.architecture
        }
    }

    /// The NB dispersion per feature (`--dispersion feature`; the MLP family only).
    public var featureDispersion: Bool {
        get { if case .mlp(let o) = self { return o.featureDispersion } else { return false } }
        set { if case .mlp(var o) = self { o.featureDispersion = newValue; self = .mlp(o) } }
    }

    /// A conditional model's encoder reads the label (the MLP family can leave it to the decoder).
    public var conditionEncoder: Bool {
        get { if case .mlp(let o) = self { return o.conditionEncoder } else { return true } }
        set { if case .mlp(var o) = self { o.conditionEncoder = newValue; self = .mlp(o) } }
    }

    /// `--dispersion feature-covariate` (the MLP family).
    public var covariateDispersion: Bool {
        get { if case .mlp(let o) = self { return o.covariateDispersion } else { return false } }
        set { if case .mlp(var o) = self { o.covariateDispersion = newValue; self = .mlp(o) } }
    }

    /// How the encoder fills missing inputs.
    public var missingFill: MissingFill {
        get { options.learnedMissingFill ? .learned : .zero }
        set {
            var o = options
            o.learnedMissingFill = newValue == .learned
            self = o.architecture
        }
    }

    /// The rules of each value, with generous limits (so that a crafted
    /// configuration can neither overflow a parameter count nor allocate
    /// beyond reason); `InvalidSetting` names the field.
    public func validate() throws {
        try InvalidSetting.check("latent_size", latentSize, in: 1...1 << 20)
        try InvalidSetting.check("conditional_classes", conditionalClasses, in: 0...1 << 20)
        switch self {
        case .mlp(let o):
            try InvalidSetting.require((1...64).contains(o.hiddenSizes.count) && o.hiddenSizes.allSatisfy { (1...1 << 24).contains($0) },
                                       o.hiddenSizes.count == 1 ? "hidden_size" : "hidden_sizes",
                                       o.hiddenSizes.count == 1 ? "must be in 1…16777216 (got \(o.hiddenSizes[0]))"
                                           : "must be 1 to 64 layers of 1…16777216 units (got \(o.hiddenSizes))")
        case .conv(let o):
            try InvalidSetting.require((1...16).contains(o.channels.count) && o.channels.allSatisfy { (1...1 << 16).contains($0) },
                                       "channels", "must be 1 to 16 stages of 1…65536 channels (got \(o.channels))")
        }
        do {
            try likelihood.validate()
        } catch let error as InvalidSetting {
            throw error.inside("likelihood")
        }
    }

    /// What the family requires of the image shape (`ArchitectureError`).
    public func validate(for image: ImageShape) throws { try options.validate(for: image) }

    /// `validate()`, limits on the model's size for this image shape, and the
    /// family's own checks for it.
    public func validateLimits(for image: ImageShape) throws {
        func check(_ ok: Bool, _ detail: @autoclosure () -> String) throws {
            if !ok { throw ArchitectureError.invalidOptions(family: family, detail: detail()) }
        }
        do {
            try validate()
        } catch let error as InvalidSetting {
            throw ArchitectureError.invalidOptions(family: family, detail: "\(error)")
        }
        try check((1...4096).contains(image.channels) && (1...65536).contains(image.height) && (1...65536).contains(image.width),
                  "the image shape \(image) is out of range")
        try check((checkedProduct([image.channels, image.height, image.width]) ?? .max) <= 1 << 31,
                  "the image shape \(image) has too many pixels")
        if case .conv(let o) = self {
            let n = o.channels.count
            let features = checkedProduct([o.channels[n - 1], image.height >> n, image.width >> n]) ?? .max
            try check(features <= 1 << 32, "\(features) features after the convolutions is beyond what vae-mpi trains")
        }
        try validate(for: image)
        try check(parameterCount(for: image) <= 1 << 36, "\(parameterCount(for: image)) parameters is beyond what vae-mpi trains")
    }
    public func summary(for image: ImageShape) -> String { options.summary(for: image) }
    public func parameterCount(for image: ImageShape) -> Int { options.parameterCount(for: image) }
}

extension Architecture: Codable {
    enum CodingKeys: String, CodingKey { case family }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .family)
        guard let family = Self.defaults(family: name) else {
            throw DecodingError.dataCorruptedError(
                forKey: .family, in: c,
                debugDescription: "unknown model family \"\(name)\" (known: \(Self.familyNames.joined(separator: ", ")))")
        }
        self = try type(of: family.options).init(from: decoder).architecture
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(family, forKey: .family)
        try options.encode(to: encoder)
    }
}

/// What a family needs of the images it models (typed, so that the command
/// line can add the hint that fixes it).
public enum ImageRequirement: Equatable, Sendable, CustomStringConvertible {
    /// At least one value per sample.
    case atLeastOneValue
    /// Height and width divisible by 2^stages (stride-2 convolutions).
    case sidesDivisible(stages: Int)
    /// Images, not vectors (table rows).
    case images

    public var description: String {
        switch self {
        case .atLeastOneValue:
            return "at least one value per sample"
        case .sidesDivisible(let n):
            let factor = n < 31 ? "\(1 << n)" : "2^\(n)"
            return "image height and width divisible by 2^\(n) = \(factor) for \(n) stride-2 stage\(n == 1 ? "" : "s")"
        case .images:
            return "images (C×H×W), not rows of a table"
        }
    }
}

/// Why an architecture cannot take a data set's images.
public enum ArchitectureError: Error, CustomStringConvertible, Equatable {
    case unsupportedImage(family: String, image: ImageShape, requirement: ImageRequirement)
    case invalidOptions(family: String, detail: String)

    public var description: String {
        switch self {
        case let .unsupportedImage(family, image, requirement):
            return "the \(family) VAE needs \(requirement); the images are \(image)"
        case let .invalidOptions(family, detail):
            return "\(family) VAE: \(detail)"
        }
    }
}

/// What the encoder reads where a value is missing (MIWAE, Mattei & Frellsen
/// 2019): zero, or a constant per input learned with the model.
public enum MissingFill: String, Codable, CaseIterable, Sendable {
    case zero
    case learned
}
