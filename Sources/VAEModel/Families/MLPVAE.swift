import _Differentiation
import TensorCore

/// The VAE of PyTorch's `examples/vae` (Kingma & Welling 2014):
/// encoder D → H (ReLU) → (Z μ, Z log σ²); decoder Z → H (ReLU) → D.
/// Property names follow the PyTorch module, so checkpoints load into it.
/// Conditional (Sohn et al. 2015) with K > 0 classes: fc1 takes
/// [x, one-hot(label)] and fc3 takes [z, one-hot(label)].
/// Legend: B batch, D data dimensions, H hidden units, Z latent, K classes.
public struct MLPVAE: VariationalAutoencoder {
    public var fc1: Dense            // (H, D + K)
    public var fc21: Dense           // (Z, H) → μ
    public var fc22: Dense           // (Z, H) → log σ²
    public var fc3: Dense            // (H, Z + K)
    public var fc4: Dense            // (D, H) → the likelihood's parameter 0 (logits, mean, location)
    /// The likelihood's parameters 1…P−1, ((P−1)·D, H), named `fc4_<head>`
    /// (`fc4_logvar` for a learned-variance Gaussian); (0, H) and left out of
    /// checkpoints when P = 1.
    public var fc4Auxiliary: Dense
    /// The auxiliary head's checkpoint name: a constant of the architecture, not walked as a parameter.
    public var auxiliaryHeadName: ConstantName

    /// A freshly initialised model (PyTorch's default Linear initialisation),
    /// each layer drawn from its own stream `(seed, .initialization, layer)`.
    public init(dataSize: Int, hiddenSize: Int, latentSize: Int, auxiliaryOutputs: Int = 0,
                auxiliaryHeadName: String = "aux", classes: Int = 0, seed: UInt64) {
        precondition(dataSize > 0 && hiddenSize > 0 && latentSize > 0 && classes >= 0,
                     "MLPVAE sizes must be positive (D \(dataSize), H \(hiddenSize), Z \(latentSize), K \(classes))")
        func stream(_ layer: UInt32) -> RandomStream {
            RandomStream(seed: seed, domain: .initialization, layer)
        }
        fc1 = Dense(inputSize: dataSize + classes, outputSize: hiddenSize, stream: stream(0))
        fc21 = Dense(inputSize: hiddenSize, outputSize: latentSize, stream: stream(1))
        fc22 = Dense(inputSize: hiddenSize, outputSize: latentSize, stream: stream(2))
        fc3 = Dense(inputSize: latentSize + classes, outputSize: hiddenSize, stream: stream(3))
        fc4 = Dense(inputSize: hiddenSize, outputSize: dataSize, stream: stream(4))
        fc4Auxiliary = Dense(inputSize: hiddenSize, outputSize: auxiliaryOutputs * dataSize, stream: stream(5))
        self.auxiliaryHeadName = ConstantName(auxiliaryHeadName)
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, condition: Tensor, on backend: Backend) -> Posterior {
        // x is data: nothing here is differentiated with respect to it.
        let h1 = fc1.relu(withoutDerivative(at: concatenatingLastDimension(x, condition)), on: backend)
        return Posterior(mean: fc21(h1, on: backend), logVariance: fc22(h1, on: backend))
    }

    @differentiable(reverse, wrt: (self, z))
    public func decode(_ z: Tensor, condition: Tensor, on backend: Backend) -> DecoderOutput {
        let h3 = fc3.relu(concatenatingLastDimension(z, condition), on: backend)
        return DecoderOutput(location: fc4(h3, on: backend), auxiliary: fc4Auxiliary(h3, on: backend))
    }

    public var latentSize: Int { fc21.outputSize }
    public var dataSize: Int { fc4.outputSize }
    public var classes: Int { fc3.inputSize - latentSize }
    public var hiddenSize: Int { fc1.outputSize }
    /// P − 1: the likelihood's parameters per dimension beyond the first.
    public var auxiliaryOutputs: Int { fc4Auxiliary.outputSize / max(dataSize, 1) }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try fc1.walkParameters { try visit("fc1." + $0, &$1) }
        try fc21.walkParameters { try visit("fc21." + $0, &$1) }
        try fc22.walkParameters { try visit("fc22." + $0, &$1) }
        try fc3.walkParameters { try visit("fc3." + $0, &$1) }
        try fc4.walkParameters { try visit("fc4." + $0, &$1) }
        try fc4Auxiliary.walkParameters { try visit("fc4_\(auxiliaryHeadName)." + $0, &$1) }
    }
}

extension MLPVAE {
    /// The MLP family: PyTorch's example VAE, D → H → (Z, Z), Z → H → D, for
    /// any image shape (flattened).
    public struct Options: ArchitectureOptions {
        public static let family = "mlp"
        public static let needsImages = false
        /// H, hidden units of the encoder and of the decoder.
        public var hiddenSize = 400
        public var latentSize = 20
        public var likelihood = Likelihood.bernoulli
        public var conditionalClasses = 0

        public init(hiddenSize: Int = 400, latentSize: Int = 20, likelihood: Likelihood = .bernoulli,
                    conditionalClasses: Int = 0) {
            self.hiddenSize = hiddenSize
            self.latentSize = latentSize
            self.likelihood = likelihood
            self.conditionalClasses = conditionalClasses
        }

        enum CodingKeys: String, CodingKey { case hiddenSize, latentSize, likelihood, conditionalClasses }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
            latentSize = try c.decode(Int.self, forKey: .latentSize)
            likelihood = try c.decode(Likelihood.self, forKey: .likelihood)
            conditionalClasses = try c.decodeIfPresent(Int.self, forKey: .conditionalClasses) ?? 0
        }

        /// An unconditional model's options are written as before the
        /// conditional VAE existed.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(hiddenSize, forKey: .hiddenSize)
            try c.encode(latentSize, forKey: .latentSize)
            try c.encode(likelihood, forKey: .likelihood)
            if conditionalClasses > 0 { try c.encode(conditionalClasses, forKey: .conditionalClasses) }
        }

        public func validate(for image: ImageShape) throws {
            guard hiddenSize >= 1, latentSize >= 1, conditionalClasses >= 0 else {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "hidden size \(hiddenSize) and latent size \(latentSize) must be at least 1")
            }
            guard image.size >= 1 else {
                throw ArchitectureError.unsupportedImage(family: Self.family, image: image, requirement: .atLeastOneValue)
            }
        }

        public func summary(for image: ImageShape) -> String {
            "mlp \(image.size)-\(hiddenSize)-\(latentSize)"
                + (conditionalClasses > 0 ? ", conditional on \(conditionalClasses) classes" : "")
        }

        public func parameterCount(for image: ImageShape) -> Int {
            let (d, h, z, k) = (image.size, hiddenSize, latentSize, conditionalClasses)
            let auxiliary = likelihood.auxiliaryOutputs * (d * h + d)
            return ((d + k) * h + h) + 2 * (h * z + z) + ((z + k) * h + h) + (h * d + d) + auxiliary
        }

        public func makeModel(for image: ImageShape, seed: UInt64) -> MLPVAE {
            MLPVAE(dataSize: image.size, hiddenSize: hiddenSize, latentSize: latentSize,
                   auxiliaryOutputs: likelihood.auxiliaryOutputs, auxiliaryHeadName: likelihood.auxiliaryHeadName,
                   classes: conditionalClasses, seed: seed)
        }

        public var architecture: Architecture { .mlp(self) }
    }
}
