import Datasets
import TensorCore
import VAEModel

/// A model the trainer can build from a `ModelSpec`.
public protocol TrainableModel: VariationalAutoencoder {
    /// A freshly initialised model of the given shape (only rank 0 calls
    /// this for training; the result is broadcast).
    init(spec: ModelSpec, seed: UInt64)
}

extension MLPVAE: TrainableModel {
    public init(spec: ModelSpec, seed: UInt64) {
        self.init(dataSize: spec.image.size, hiddenSize: spec.hiddenSize, latentSize: spec.latentSize,
                  learnsVariance: spec.likelihood == .gaussianLearned, seed: seed)
    }
}

extension ConvVAE: TrainableModel {
    public init(spec: ModelSpec, seed: UInt64) {
        self.init(channels: spec.image.channels, height: spec.image.height, width: spec.image.width,
                  convChannels: (spec.convChannels[0], spec.convChannels[1]), latentSize: spec.latentSize,
                  learnsVariance: spec.likelihood == .gaussianLearned, seed: seed)
    }
}

extension ModelSpec {
    /// The Swift type that implements this spec's architecture.
    public var modelType: any TrainableModel.Type {
        switch kind {
        case .mlp: return MLPVAE.self
        case .conv: return ConvVAE.self
        }
    }
}
