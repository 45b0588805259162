import Datasets
import TensorCore
import VAEModel

/// A trained model for inference, whatever its architecture: the encoder,
/// the decoder and the likelihood behind plain closures, run on a backend.
/// A conditional model takes each image's one-hot label (B, K) as its
/// condition; an unconditional one takes (B, 0).
/// Legend: B batch, D data dimensions (C·H·W), Z latent, K classes.
public struct LoadedModel {
    public let architecture: Architecture
    /// The shape of the images the model takes.
    public let image: ImageShape
    public let likelihood: Likelihood
    public let latentSize: Int
    /// K: the classes of a conditional model; 0 for an unconditional one.
    public let classes: Int
    private let encodeFunction: (Tensor, Tensor) -> Posterior
    private let decodeFunction: (Tensor, Tensor) -> DecoderOutput
    private let importanceWeighted: (Tensor, Tensor, [Tensor]) -> ImportanceWeightedEstimate

    public init<Model: VariationalAutoencoder>(_ model: Model, architecture: Architecture, image: ImageShape,
                                               backend: Backend) {
        let likelihood = architecture.likelihood
        self.architecture = architecture
        self.image = image
        self.likelihood = likelihood
        latentSize = model.latentSize
        classes = model.classes
        encodeFunction = { model.encode($0, condition: $1, on: backend) }
        decodeFunction = { model.decode($0, condition: $1, on: backend) }
        importanceWeighted = {
            importanceWeightedLogLikelihood(model, x: $0, condition: $1, noise: $2, likelihood: likelihood, on: backend)
        }
    }

    public var isConditional: Bool { classes > 0 }

    /// The condition for B images with these labels: (B, K) one-hot rows
    /// for a conditional model (which needs the labels), (B, 0) otherwise.
    public func condition(labels: [Int32]?, count: Int) -> Tensor {
        guard classes > 0 else { return Tensor(zeros: [count, 0]) }
        guard let labels else { preconditionFailure("a conditional model needs labels") }
        precondition(labels.count == count, "one label per image")
        return Tensor(oneHot: labels, classes: classes)
    }

    /// The condition of `images[range]`: their labels' one-hot rows, or (B, 0).
    public func condition(of images: ImageSet, _ range: Range<Int>) -> Tensor {
        condition(labels: images.labels.map { Array($0[range]) }, count: range.count)
    }

    /// x (B, D) → q(z | x), with the condition (B, K) of a conditional model.
    public func encode(_ x: Tensor, condition: Tensor? = nil) -> Posterior {
        encodeFunction(x, condition ?? Tensor(zeros: [x.shape[0], 0]))
    }
    /// z (B, Z) → p(x | z)'s parameters.
    public func decode(_ z: Tensor, condition: Tensor? = nil) -> DecoderOutput {
        decodeFunction(z, condition ?? Tensor(zeros: [z.shape[0], 0]))
    }
    /// z (B, Z) → E[x | z] (B, D), for pictures.
    public func decodeMean(_ z: Tensor, condition: Tensor? = nil) -> Tensor {
        likelihood.mean(decode(z, condition: condition))
    }
    public func importanceWeightedEstimate(_ x: Tensor, condition: Tensor? = nil, noise: [Tensor]) -> ImportanceWeightedEstimate {
        importanceWeighted(x, condition ?? Tensor(zeros: [x.shape[0], 0]), noise)
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
