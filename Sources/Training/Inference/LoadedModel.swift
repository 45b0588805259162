import TensorCore
import VAEModel

/// A trained model for inference, whatever its architecture: the encoder,
/// the decoder and the likelihood behind plain closures, run on a backend.
/// Legend: B batch, D data dimensions (C·H·W), Z latent.
public struct LoadedModel {
    public let architecture: Architecture
    /// The shape of the images the model takes.
    public let image: ImageShape
    public let likelihood: Likelihood
    public let latentSize: Int
    private let encodeFunction: (Tensor) -> Posterior
    private let decodeFunction: (Tensor) -> DecoderOutput
    private let importanceWeighted: (Tensor, [Tensor]) -> ImportanceWeightedEstimate

    public init<Model: VariationalAutoencoder>(_ model: Model, architecture: Architecture, image: ImageShape,
                                               backend: Backend) {
        let likelihood = architecture.likelihood
        self.architecture = architecture
        self.image = image
        self.likelihood = likelihood
        latentSize = model.latentSize
        encodeFunction = { model.encode($0, on: backend) }
        decodeFunction = { model.decode($0, on: backend) }
        importanceWeighted = {
            importanceWeightedLogLikelihood(model, x: $0, noise: $1, likelihood: likelihood, on: backend)
        }
    }

    /// x (B, D) → q(z | x).
    public func encode(_ x: Tensor) -> Posterior { encodeFunction(x) }
    /// z (B, Z) → p(x | z)'s parameters.
    public func decode(_ z: Tensor) -> DecoderOutput { decodeFunction(z) }
    /// z (B, Z) → E[x | z] (B, D), for pictures.
    public func decodeMean(_ z: Tensor) -> Tensor { likelihood.mean(decode(z)) }
    public func importanceWeightedEstimate(_ x: Tensor, noise: [Tensor]) -> ImportanceWeightedEstimate {
        importanceWeighted(x, noise)
    }
}

extension Checkpoint {
    /// The checkpoint's model, ready for inference on `backend`.
    public func loadedModel(on backend: Backend? = nil) throws -> LoadedModel {
        let backend = try backend ?? Backend(library: configuration.kernels, precision: configuration.precision)
        func open<Options: ArchitectureOptions>(_ options: Options) throws -> LoadedModel {
            LoadedModel(try model(options), architecture: architecture, image: sidecar.image, backend: backend)
        }
        return try open(architecture.options)
    }
}
