import _Differentiation
import TensorCore

/// The VAE of PyTorch's `examples/vae` (Kingma & Welling 2014):
/// encoder D → H (ReLU) → (Z μ, Z log σ²); decoder Z → H (ReLU) → D.
/// Property names follow the PyTorch module, so checkpoints load into it.
/// Legend: B batch, D data dimensions, H hidden units, Z latent.
public struct MLPVAE: VariationalAutoencoder {
    public var fc1: Dense            // (H, D)
    public var fc21: Dense           // (Z, H) → μ
    public var fc22: Dense           // (Z, H) → log σ²
    public var fc3: Dense            // (H, Z)
    public var fc4: Dense            // (D, H) → logits or mean
    /// Learned per-dimension log σ² of a Gaussian decoder, (D, H); (0, H) and
    /// left out of checkpoints when the likelihood does not learn its variance.
    public var fc4LogVariance: Dense

    /// A freshly initialised model (PyTorch's default Linear initialisation),
    /// each layer drawn from its own stream `(seed, .initialization, layer)`.
    public init(dataSize: Int, hiddenSize: Int, latentSize: Int,
                learnsVariance: Bool = false, seed: UInt64) {
        precondition(dataSize > 0 && hiddenSize > 0 && latentSize > 0,
                     "MLPVAE sizes must be positive (D \(dataSize), H \(hiddenSize), Z \(latentSize))")
        func stream(_ layer: UInt32) -> RandomStream {
            RandomStream(seed: seed, domain: .initialization, layer)
        }
        fc1 = Dense(inputSize: dataSize, outputSize: hiddenSize, stream: stream(0))
        fc21 = Dense(inputSize: hiddenSize, outputSize: latentSize, stream: stream(1))
        fc22 = Dense(inputSize: hiddenSize, outputSize: latentSize, stream: stream(2))
        fc3 = Dense(inputSize: latentSize, outputSize: hiddenSize, stream: stream(3))
        fc4 = Dense(inputSize: hiddenSize, outputSize: dataSize, stream: stream(4))
        fc4LogVariance = Dense(inputSize: hiddenSize, outputSize: learnsVariance ? dataSize : 0,
                               stream: stream(5))
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, on backend: Backend) -> Posterior {
        let h1 = fc1.relu(x, on: backend)
        return Posterior(mean: fc21(h1, on: backend), logVariance: fc22(h1, on: backend))
    }

    @differentiable(reverse)
    public func decode(_ z: Tensor, on backend: Backend) -> DecoderOutput {
        let h3 = fc3.relu(z, on: backend)
        return DecoderOutput(location: fc4(h3, on: backend), logVariance: fc4LogVariance(h3, on: backend))
    }

    public var latentSize: Int { fc21.outputSize }
    public var dataSize: Int { fc1.inputSize }
    public var hiddenSize: Int { fc1.outputSize }
    public var learnsVariance: Bool { fc4LogVariance.outputSize > 0 }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try fc1.walkParameters { try visit("fc1." + $0, &$1) }
        try fc21.walkParameters { try visit("fc21." + $0, &$1) }
        try fc22.walkParameters { try visit("fc22." + $0, &$1) }
        try fc3.walkParameters { try visit("fc3." + $0, &$1) }
        try fc4.walkParameters { try visit("fc4." + $0, &$1) }
        try fc4LogVariance.walkParameters { try visit("fc4_logvar." + $0, &$1) }
    }
}

extension MLPVAE {
    /// The MLP family: PyTorch's example VAE, D → H → (Z, Z), Z → H → D, for
    /// any image shape (flattened).
    public struct Options: ArchitectureOptions {
        public static let family = "mlp"
        /// H, hidden units of the encoder and of the decoder.
        public var hiddenSize = 400
        public var latentSize = 20
        public var likelihood = Likelihood.bernoulli

        public init(hiddenSize: Int = 400, latentSize: Int = 20, likelihood: Likelihood = .bernoulli) {
            self.hiddenSize = hiddenSize
            self.latentSize = latentSize
            self.likelihood = likelihood
        }

        public func validate(for image: ImageShape) throws {
            guard hiddenSize >= 1, latentSize >= 1 else {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "hidden size \(hiddenSize) and latent size \(latentSize) must be at least 1")
            }
            guard image.size >= 1 else {
                throw ArchitectureError.unsupportedImage(family: Self.family, image: image, requirement: "at least one pixel")
            }
        }

        public func summary(for image: ImageShape) -> String { "mlp \(image.size)-\(hiddenSize)-\(latentSize)" }

        public func parameterCount(for image: ImageShape) -> Int {
            let (d, h, z) = (image.size, hiddenSize, latentSize)
            let variance = likelihood.learnsVariance ? d * h + d : 0
            return (d * h + h) + 2 * (h * z + z) + (z * h + h) + (h * d + d) + variance
        }

        public func makeModel(for image: ImageShape, seed: UInt64) -> MLPVAE {
            MLPVAE(dataSize: image.size, hiddenSize: hiddenSize, latentSize: latentSize,
                   learnsVariance: likelihood.learnsVariance, seed: seed)
        }

        public var architecture: Architecture { .mlp(self) }
    }
}
