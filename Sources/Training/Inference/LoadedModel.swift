import Datasets
import TensorCore
import VAEModel

/// What a decoded latent becomes: the mean E[x | z], or a draw from p(x | z).
public enum Observation: String, CaseIterable, Sendable {
    case mean
    case sample
}

/// A trained model for inference, whatever its architecture: the encoder,
/// the decoder and the objective's terms behind plain closures, run on a
/// backend. A conditional model takes each image's one-hot label (B, K) as
/// its condition; an unconditional one takes (B, 0).
/// Legend: B batch, D data dimensions (C·H·W), Z latent, K classes.
public struct LoadedModel {
    public let architecture: Architecture
    /// The shape of the images the model takes.
    public let image: ImageShape
    public let likelihood: Likelihood
    public let latentSize: Int
    /// K: the classes of a conditional model; 0 for an unconditional one.
    public let classes: Int
    private let encodeMeanFunction: (Tensor, Tensor) -> Tensor
    private let decodeFunction: (Tensor, Tensor) -> DecoderOutput
    private let termsFunction: (DataBatch, Tensor) -> SampleTerms
    private let importanceWeighted: (DataBatch, [Tensor]) -> ImportanceWeightedEstimate
    private let posteriorFunction: (Tensor, Tensor?, Tensor) -> any LatentPosterior
    private let logPriorFunction: (Tensor) -> [Double]

    public init<Model: VariationalAutoencoder>(_ model: Model, architecture: Architecture, image: ImageShape,
                                               backend: Backend) {
        let likelihood = architecture.likelihood
        self.architecture = architecture
        self.image = image
        self.likelihood = likelihood
        latentSize = model.latentSize
        classes = model.classes
        encodeMeanFunction = { model.encode($0, condition: $1, on: backend).mean }
        decodeFunction = { model.decode($0, condition: $1, on: backend) }
        termsFunction = { sampleTerms(model, batch: $0, noise: $1, likelihood: likelihood, on: backend) }
        importanceWeighted = {
            importanceWeightedLogLikelihood(model, batch: $0, noise: $1, likelihood: likelihood, on: backend)
        }
        posteriorFunction = { model.encode($0, mask: $1, condition: $2, on: backend) }
        logPriorFunction = { Model.Posterior.logPrior($0) }
    }

    /// q(z | x) of a batch (B, D) whose values `mask` marks 0 are missing
    /// (0 in x; the model fills them as in training).
    public func posterior(_ x: Tensor, mask: Tensor?, condition: Tensor? = nil) -> any LatentPosterior {
        posteriorFunction(x, mask, condition ?? Tensor(zeros: [x.shape[0], 0]))
    }

    /// log p(z) of each row of z (B, Z) under the prior.
    public func logPrior(_ z: Tensor) -> [Double] { logPriorFunction(z) }

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

    /// `images[range]` as the objective takes them: the encoder's input, the
    /// likelihood's targets, the condition.
    public func batch(of images: ImageSet, _ range: Range<Int>) -> DataBatch {
        let input = images.batch(range)
        return DataBatch(input: input, target: likelihood.targets == .levels ? images.batch(range, as: .levels) : input,
                         condition: condition(of: images, range), mask: images.mask(range))
    }

    /// x (B, D) → E_q[z] (B, Z), with the condition (B, K) of a conditional model.
    public func posteriorMean(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        encodeMeanFunction(x, condition ?? Tensor(zeros: [x.shape[0], 0]))
    }
    /// z (B, Z) → p(x | z)'s parameters.
    public func decode(_ z: Tensor, condition: Tensor? = nil) -> DecoderOutput {
        decodeFunction(z, condition ?? Tensor(zeros: [z.shape[0], 0]))
    }
    /// z (B, Z) → E[x | z] (B, D), in the encoder's scale, for pictures.
    public func decodeMean(_ z: Tensor, condition: Tensor? = nil) -> Tensor {
        likelihood.mean(decode(z, condition: condition))
    }
    /// z (B, Z) → E[x | z], or a draw x ~ p(x | z) with uniforms from the
    /// stream (seed, .sampling, 2), in the encoder's scale.
    public func observe(_ z: Tensor, condition: Tensor? = nil, as observation: Observation, seed: UInt64) -> Tensor {
        let output = decode(z, condition: condition)
        switch observation {
        case .mean:
            return likelihood.mean(output)
        case .sample:
            return likelihood.sample(output, uniforms: ElementUniforms(stream: RandomStream(seed: seed, domain: .sampling, 2)))
        }
    }

    /// The objective's terms of each sample, for one draw of the latent (see `sampleTerms`).
    public func terms(_ batch: DataBatch, noise: Tensor) -> SampleTerms {
        termsFunction(batch, noise)
    }
    public func importanceWeightedEstimate(_ batch: DataBatch, noise: [Tensor]) -> ImportanceWeightedEstimate {
        importanceWeighted(batch, noise)
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
