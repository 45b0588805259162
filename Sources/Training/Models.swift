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
                  learnsVariance: false, seed: seed)
    }
}

extension ModelSpec {
    /// The Swift type that implements this spec's architecture.
    public var modelType: any TrainableModel.Type {
        switch kind {
        case .mlp: return MLPVAE.self
        }
    }
}

extension Likelihood {
    /// E[x | z]: the image a decoder output stands for, in [0, 1] for
    /// display (Bernoulli: sigmoid of the logits).
    public func mean(_ output: DecoderOutput) -> Tensor {
        switch self {
        case .bernoulli: return sigmoid(output.location)
        }
    }
}
