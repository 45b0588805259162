import _Differentiation
import TensorCore

/// The VAE of PyTorch's `examples/vae` (Kingma & Welling 2014):
/// encoder D → H (ReLU) → (Z μ, Z log σ²); decoder Z → H (ReLU) → D.
/// Property names follow the PyTorch module, so checkpoints load into it.
/// Deeper: hidden sizes H1 … Hn, the encoder D → H1 → … → Hn, the decoder
/// mirrored (Z → Hn → … → H1 → D), the layers past the first named
/// `enc.hidden1…` and `dec.hidden1…`; the activation ReLU or tanh (Mult-VAE).
/// Conditional (Sohn et al. 2015) with K > 0 classes: fc1 takes
/// [x, one-hot(label)] and fc3 takes [z, one-hot(label)].
/// Legend: B batch, D data dimensions, H hidden units, Z latent, K classes.
public struct MLPVAE: VariationalAutoencoder {
    public var fc1: Dense            // (H1, D + K)
    /// H1 → H2 → … → Hn (none for one hidden layer).
    public var encoderHidden: DenseStages
    public var fc21: Dense           // (Z, Hn) → μ
    public var fc22: Dense           // (Z, Hn) → log σ²
    public var fc3: Dense            // (Hn, Z + K)
    /// Hn → … → H1 (none for one hidden layer).
    public var decoderHidden: DenseStages
    public var fc4: Dense            // (D, H1) → the likelihood's parameter 0 (logits, mean, location)
    /// The likelihood's parameters 1…P−1, ((P−1)·D, H), named `fc4_<head>`
    /// (`fc4_logvar` for a learned-variance Gaussian); (0, H) and left out of
    /// checkpoints when P = 1.
    public var fc4Auxiliary: Dense
    /// The auxiliary head's checkpoint name: a constant of the architecture, not walked as a parameter.
    public var auxiliaryHeadName: ConstantName
    /// "relu" or "tanh" (a constant, not walked).
    public var activationName: ConstantName
    /// "feature-covariate" when the likelihood's parameters 1…P−1 are learned
    /// per feature and covariate category (scVI's `gene-batch`): the head
    /// reads the one-hot condition; "" otherwise (a constant, not walked).
    public var dispersionName: ConstantName
    /// The encoder's value for each missing input (D), learned
    /// (`--missing-fill learned`); (0) and left out of checkpoints with the
    /// zero fill.
    public var missingFill: Tensor

    /// A freshly initialised model (PyTorch's default Linear initialisation),
    /// each layer drawn from its own stream `(seed, .initialization, layer)`.
    /// Layer streams: fc1 … fc4 and the auxiliary head 0 … 5 (those of the
    /// one-layer model before deeper ones existed), then the encoder's extra
    /// layers, then the decoder's.
    /// `featureDispersion`: the likelihood's parameters 1…P−1 are learned
    /// per feature, not computed from z (`--dispersion feature`, scVI's
    /// per-gene θ): the head has no weights (((P−1)·D, 0)), only its bias,
    /// starting at 0, repeated for every sample. `covariateDispersion` (with
    /// K > 0 classes): per feature and class (`--dispersion feature-covariate`,
    /// scVI's `gene-batch`): the head's weights ((P−1)·D, K), starting at 0,
    /// read the one-hot class, so sample b's parameters are bias + W[:, k_b].
    public init(dataSize: Int, hiddenSizes: [Int], latentSize: Int, activation: Activation = .relu,
                auxiliaryOutputs: Int = 0, auxiliaryHeadName: String = "aux", classes: Int = 0,
                learnedMissingFill: Bool = false, featureDispersion: Bool = false, covariateDispersion: Bool = false,
                conditionEncoder: Bool = true, seed: UInt64) {
        precondition(dataSize > 0 && !hiddenSizes.isEmpty && hiddenSizes.allSatisfy { $0 > 0 } && latentSize > 0 && classes >= 0,
                     "MLPVAE sizes must be positive (D \(dataSize), H \(hiddenSizes), Z \(latentSize), K \(classes))")
        func stream(_ layer: Int) -> RandomStream {
            RandomStream(seed: seed, domain: .initialization, UInt32(layer))
        }
        let (first, last, n) = (hiddenSizes[0], hiddenSizes[hiddenSizes.count - 1], hiddenSizes.count)
        fc1 = Dense(inputSize: dataSize + (conditionEncoder ? classes : 0), outputSize: first, stream: stream(0))
        encoderHidden = DenseStages((1..<n).map {
            Dense(inputSize: hiddenSizes[$0 - 1], outputSize: hiddenSizes[$0], stream: stream(5 + $0))
        })
        fc21 = Dense(inputSize: last, outputSize: latentSize, stream: stream(1))
        fc22 = Dense(inputSize: last, outputSize: latentSize, stream: stream(2))
        fc3 = Dense(inputSize: latentSize + classes, outputSize: last, stream: stream(3))
        decoderHidden = DenseStages((1..<n).map {
            Dense(inputSize: hiddenSizes[n - $0], outputSize: hiddenSizes[n - 1 - $0], stream: stream(5 + n - 1 + $0))
        })
        fc4 = Dense(inputSize: first, outputSize: dataSize, stream: stream(4))
        precondition(!covariateDispersion || (classes > 0 && auxiliaryOutputs > 0),
                     "a dispersion per covariate needs classes and an auxiliary head")
        fc4Auxiliary = (featureDispersion || covariateDispersion) && auxiliaryOutputs > 0
            ? Dense(weight: Tensor(zeros: [auxiliaryOutputs * dataSize, covariateDispersion ? classes : 0]),
                    bias: Tensor(zeros: [auxiliaryOutputs * dataSize]))
            : Dense(inputSize: first, outputSize: auxiliaryOutputs * dataSize, stream: stream(5))
        dispersionName = ConstantName(covariateDispersion ? Dispersion.featureCovariate.rawValue : "")
        self.auxiliaryHeadName = ConstantName(auxiliaryHeadName)
        activationName = ConstantName(activation.rawValue)
        missingFill = Tensor(zeros: [learnedMissingFill ? dataSize : 0])
    }

    /// One hidden layer of `hiddenSize` units (PyTorch's example).
    public init(dataSize: Int, hiddenSize: Int, latentSize: Int, auxiliaryOutputs: Int = 0,
                auxiliaryHeadName: String = "aux", classes: Int = 0, seed: UInt64) {
        self.init(dataSize: dataSize, hiddenSizes: [hiddenSize], latentSize: latentSize, auxiliaryOutputs: auxiliaryOutputs,
                  auxiliaryHeadName: auxiliaryHeadName, classes: classes, seed: seed)
    }

    /// The activation between layers.
    public var activation: Activation { Activation(rawValue: activationName.value) ?? .relu }

    /// activation(layer(x)), ReLU fused into the matmul. With x inactive (data),
    /// the configuration with respect to the layer alone is the one used, and
    /// no gradient of x (a product as large as the layer's forward one) is computed.
    @differentiable(reverse, wrt: (layer, x))
    @differentiable(reverse, wrt: layer)
    static func activated(_ layer: Dense, _ x: Tensor, _ activation: Activation, on backend: Backend) -> Tensor {
        activation == .relu ? layer.relu(x, on: backend) : tanh(layer(x, on: backend))
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, condition: Tensor, on backend: Backend) -> Posterior {
        // x is data: nothing here is differentiated with respect to it.
        encodeFirstLayerInput(withoutDerivative(at: concatenatingLastDimension(x, encoderCondition(condition))), on: backend)
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, mask: Tensor?, condition: Tensor, on backend: Backend) -> Posterior {
        guard let mask, withoutDerivative(at: missingFill.count) > 0 else { return encode(x, condition: condition, on: backend) }
        return encodeFirstLayerInput(concatenatingLastDimension(fillingMissing(x, mask: mask, fill: missingFill),
                                                                withoutDerivative(at: encoderCondition(condition))),
                                     on: backend)
    }

    /// Whether the encoder reads the condition too (fc1 takes [x, one-hot]); a
    /// model conditioned in its decoder only (`conditionEncoder: false`, scVI's
    /// default for a batch) has fc1 of D inputs.
    public var conditionsEncoder: Bool { fc1.inputSize > dataSize }

    /// The condition as the encoder takes it: all of it, or none (B, 0).
    func encoderCondition(_ condition: Tensor) -> Tensor {
        conditionsEncoder ? condition : Tensor(zeros: [condition.shape[0], 0])
    }

    /// The encoder from fc1's input, [x, one-hot(label)] (B, D + K): with
    /// respect to the input too when it depends on the model (a learned
    /// fill of missing values), to the model alone when it is data.
    @differentiable(reverse, wrt: (self, input))
    @differentiable(reverse, wrt: self)
    func encodeFirstLayerInput(_ input: Tensor, on backend: Backend) -> Posterior {
        let activation = withoutDerivative(at: self.activation)
        let h1 = Self.activated(fc1, input, activation, on: backend)
        let h = encoderHidden.count == 0 ? h1 : encoderHidden(h1, activation: activation, on: backend)
        return Posterior(mean: fc21(h, on: backend), logVariance: fc22(h, on: backend))
    }

    @differentiable(reverse, wrt: (self, z))
    public func decode(_ z: Tensor, condition: Tensor, on backend: Backend) -> DecoderOutput {
        let activation = withoutDerivative(at: self.activation)
        let h3 = Self.activated(fc3, concatenatingLastDimension(z, condition), activation, on: backend)
        let h = decoderHidden.count == 0 ? h3 : decoderHidden(h3, activation: activation, on: backend)
        if withoutDerivative(at: fc4Auxiliary.inputSize) == 0 && withoutDerivative(at: fc4Auxiliary.outputSize) > 0 {
            // Per-feature parameters (`featureDispersion`): the head's bias for every sample.
            return DecoderOutput(location: fc4(h, on: backend),
                                 auxiliary: repeatedRow(fc4Auxiliary.bias, count: withoutDerivative(at: z.shape[0])))
        }
        if withoutDerivative(at: hasCovariateDispersion) {
            // Per feature and class: the head reads the one-hot class (data: no gradient for it).
            return DecoderOutput(location: fc4(h, on: backend), auxiliary: fc4Auxiliary(withoutDerivative(at: condition), on: backend))
        }
        return DecoderOutput(location: fc4(h, on: backend), auxiliary: fc4Auxiliary(h, on: backend))
    }

    /// Whether the likelihood's extra parameters are per feature (`--dispersion feature`).
    public var hasFeatureDispersion: Bool { fc4Auxiliary.inputSize == 0 && fc4Auxiliary.outputSize > 0 }
    /// Whether they are per feature and class (`--dispersion feature-covariate`).
    public var hasCovariateDispersion: Bool { dispersionName.value == Dispersion.featureCovariate.rawValue }

    public var latentSize: Int { fc21.outputSize }
    public var dataSize: Int { fc4.outputSize }
    public var classes: Int { fc3.inputSize - latentSize }
    public var hiddenSize: Int { fc1.outputSize }
    public var hiddenSizes: [Int] { [fc1.outputSize] + encoderHidden.layers.map(\.outputSize) }
    /// P − 1: the likelihood's parameters per dimension beyond the first.
    public var auxiliaryOutputs: Int { fc4Auxiliary.outputSize / max(dataSize, 1) }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try fc1.walkParameters { try visit("fc1." + $0, &$1) }
        try encoderHidden.walkParameters { try visit("enc.hidden" + $0, &$1) }
        try fc21.walkParameters { try visit("fc21." + $0, &$1) }
        try fc22.walkParameters { try visit("fc22." + $0, &$1) }
        try fc3.walkParameters { try visit("fc3." + $0, &$1) }
        try decoderHidden.walkParameters { try visit("dec.hidden" + $0, &$1) }
        try fc4.walkParameters { try visit("fc4." + $0, &$1) }
        try fc4Auxiliary.walkParameters { try visit("fc4_\(auxiliaryHeadName)." + $0, &$1) }
        try visit("missing_fill", &missingFill)
    }
}

extension MLPVAE {
    /// The MLP family: PyTorch's example VAE, D → H → (Z, Z), Z → H → D, for
    /// any image shape (flattened).
    public struct Options: ArchitectureOptions {
        public static let family = "mlp"
        public static let needsImages = false
        /// H1 … Hn, the hidden layers of the encoder (the decoder mirrors them).
        public var hiddenSizes = [400]
        public var latentSize = 20
        public var likelihood = Likelihood.bernoulli
        public var conditionalClasses = 0
        public var activation = Activation.relu
        /// Learned constants for the encoder's missing inputs (`--missing-fill learned`).
        public var learnedMissingFill = false
        /// The negative binomial's dispersion θ per feature, not per sample (`--dispersion feature`).
        public var featureDispersion = false
        /// θ per feature and covariate category (`--dispersion feature-covariate`; needs a conditional model).
        public var covariateDispersion = false
        /// A conditional model's encoder reads the label too (Sohn et al.); false: the decoder only
        /// (`--no-encoder-condition`, scVI's `encode_covariates=False`).
        public var conditionEncoder = true

        public init(hiddenSize: Int = 400, latentSize: Int = 20, likelihood: Likelihood = .bernoulli,
                    conditionalClasses: Int = 0) {
            self.init(hiddenSizes: [hiddenSize], latentSize: latentSize, likelihood: likelihood,
                      conditionalClasses: conditionalClasses)
        }

        public init(hiddenSizes: [Int], latentSize: Int = 20, likelihood: Likelihood = .bernoulli,
                    conditionalClasses: Int = 0, activation: Activation = .relu) {
            self.hiddenSizes = hiddenSizes
            self.latentSize = latentSize
            self.likelihood = likelihood
            self.conditionalClasses = conditionalClasses
            self.activation = activation
        }

        /// H1, the first hidden layer (all of them, for one hidden layer): setting it makes one hidden layer.
        public var hiddenSize: Int {
            get { hiddenSizes.first ?? 0 }
            set { hiddenSizes = [newValue] }
        }

        enum CodingKeys: String, CodingKey {
            case hiddenSize, hiddenSizes, latentSize, likelihood, conditionalClasses, activation, missingFill, dispersion
            case conditionEncoder
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let sizes = try c.decodeIfPresent([Int].self, forKey: .hiddenSizes) {
                hiddenSizes = sizes
            } else {
                hiddenSizes = [try c.decode(Int.self, forKey: .hiddenSize)]
            }
            latentSize = try c.decode(Int.self, forKey: .latentSize)
            likelihood = try c.decode(Likelihood.self, forKey: .likelihood)
            conditionalClasses = try c.decodeIfPresent(Int.self, forKey: .conditionalClasses) ?? 0
            activation = try c.decodeIfPresent(Activation.self, forKey: .activation) ?? .relu
            learnedMissingFill = try c.decodeIfPresent(MissingFill.self, forKey: .missingFill) == .learned
            let dispersion = try c.decodeIfPresent(Dispersion.self, forKey: .dispersion)
            featureDispersion = dispersion == .feature
            covariateDispersion = dispersion == .featureCovariate
            conditionEncoder = try c.decodeIfPresent(Bool.self, forKey: .conditionEncoder) ?? true
        }

        /// The one-hidden-layer, ReLU, unconditional model's options are written
        /// as before deeper models, tanh and the conditional VAE existed.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            if hiddenSizes.count == 1 {
                try c.encode(hiddenSizes[0], forKey: .hiddenSize)
            } else {
                try c.encode(hiddenSizes, forKey: .hiddenSizes)
            }
            try c.encode(latentSize, forKey: .latentSize)
            try c.encode(likelihood, forKey: .likelihood)
            if conditionalClasses > 0 { try c.encode(conditionalClasses, forKey: .conditionalClasses) }
            if activation != .relu { try c.encode(activation, forKey: .activation) }
            if learnedMissingFill { try c.encode(MissingFill.learned, forKey: .missingFill) }
            if featureDispersion { try c.encode(Dispersion.feature, forKey: .dispersion) }
            if covariateDispersion { try c.encode(Dispersion.featureCovariate, forKey: .dispersion) }
            if !conditionEncoder { try c.encode(false, forKey: .conditionEncoder) }
        }

        public func validate(for image: ImageShape) throws {
            guard !hiddenSizes.isEmpty, hiddenSizes.allSatisfy({ $0 >= 1 }), latentSize >= 1, conditionalClasses >= 0 else {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "hidden sizes \(hiddenSizes) and latent size \(latentSize) must be at least 1")
            }
            guard image.size >= 1 else {
                throw ArchitectureError.unsupportedImage(family: Self.family, image: image, requirement: .atLeastOneValue)
            }
            if (featureDispersion || covariateDispersion) && likelihood.name != NegativeBinomialLikelihood.name {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "a dispersion per feature\(covariateDispersion ? " and covariate" : "") applies "
                        + "to the negative-binomial likelihood, not to \(likelihood.name)"
                        + (likelihood.name == ZeroInflatedNegativeBinomialLikelihood.name
                            ? " (its dropout logits share the decoder head with θ)" : ""))
            }
            if covariateDispersion && conditionalClasses == 0 {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "a dispersion per feature and covariate needs the covariate: "
                        + "a conditional model (--covariate FILE.csv:COLUMN, or --conditional with labels)")
            }
        }

        public func summary(for image: ImageShape) -> String {
            "mlp \(image.size)-" + hiddenSizes.map(String.init).joined(separator: "-") + "-\(latentSize)"
                + (activation == .relu ? "" : ", \(activation.rawValue)")
                + (conditionalClasses > 0 ? ", conditional on \(conditionalClasses) classes"
                    + (conditionEncoder ? "" : " (decoder only)") : "")
                + (featureDispersion ? ", dispersion per feature" : "")
                + (covariateDispersion ? ", dispersion per feature and covariate" : "")
        }

        public func parameterCount(for image: ImageShape) -> Int {
            let (d, z, k) = (image.size, latentSize, conditionalClasses)
            let (first, last) = (hiddenSizes[0], hiddenSizes[hiddenSizes.count - 1])
            var count = ((d + (conditionEncoder ? k : 0)) * first + first) + 2 * (last * z + z) + ((z + k) * last + last)
                + (first * d + d)
            for i in 1..<hiddenSizes.count {
                count += 2 * (hiddenSizes[i - 1] * hiddenSizes[i]) + hiddenSizes[i] + hiddenSizes[i - 1]
            }
            let auxiliary = likelihood.auxiliaryOutputs
                * (covariateDispersion ? d * k + d : featureDispersion ? d : d * first + d)
            return count + auxiliary + (learnedMissingFill ? d : 0)
        }

        public func makeModel(for image: ImageShape, seed: UInt64) -> MLPVAE {
            MLPVAE(dataSize: image.size, hiddenSizes: hiddenSizes, latentSize: latentSize, activation: activation,
                   auxiliaryOutputs: likelihood.auxiliaryOutputs, auxiliaryHeadName: likelihood.auxiliaryHeadName,
                   classes: conditionalClasses, learnedMissingFill: learnedMissingFill,
                   featureDispersion: featureDispersion,
                   covariateDispersion: covariateDispersion && conditionalClasses > 0, conditionEncoder: conditionEncoder,
                   seed: seed)
        }

        public var architecture: Architecture { .mlp(self) }
    }
}

/// Where the likelihood's extra parameters (the NB dispersion θ) come from:
/// the decoder, per sample and feature (scVI's `gene-cell`), one learned
/// value per feature (scVI's `gene`), or per feature and covariate category.
public enum Dispersion: String, Codable, CaseIterable, Sendable {
    case feature
    case featureSample = "feature-sample"
    /// Per feature and covariate category (scVI's `gene-batch`).
    case featureCovariate = "feature-covariate"
}

/// `row` (N) repeated as `count` rows (count, N); its derivative sums the rows.
@differentiable(reverse, wrt: row)
func repeatedRow(_ row: Tensor, count: Int) -> Tensor {
    let n = row.count
    return Tensor(shape: [count, n]) { out in
        row.scalars.withUnsafeBufferPointer { r in
            for b in 0..<count { (out.baseAddress! + b * n).update(from: r.baseAddress!, count: n) }
        }
    }
}

@derivative(of: repeatedRow, wrt: row)
func _vjpRepeatedRow(_ row: Tensor, count: Int) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let n = row.count
    return (repeatedRow(row, count: count), { dy in
        if dy.isSymbolicZero { return .zero }
        return Tensor(shape: [n]) { out in
            out.initialize(repeating: 0)
            for b in 0..<count { for j in 0..<n { out[j] += dy.scalars[b * n + j] } }
        }
    })
}
