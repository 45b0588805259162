import Datasets
import Foundation
import TensorCore
import VAEModel

/// Which architecture to train.
public enum ModelKind: String, Codable, CaseIterable, Sendable {
    /// PyTorch's example VAE: D-H-(Z, Z), Z-H-D.
    case mlp
    /// Two stride-2 convolutions, two transposed convolutions (DESIGN.md §4).
    case conv
}

/// Which observation model p(x | z) to use.
public enum LikelihoodKind: String, Codable, CaseIterable, Sendable {
    case bernoulli
    case gaussian
    case gaussianLearned = "gaussian-learned"
}

/// Everything that determines a model (its parameter shapes and its
/// likelihood): enough to rebuild it from a checkpoint.
public struct ModelSpec: Codable, Equatable, Sendable {
    public var kind: ModelKind
    public var image: ImageShape
    /// Hidden units of the MLP.
    public var hiddenSize: Int
    public var latentSize: Int
    /// Channels of the conv model's two convolutions.
    public var convChannels: [Int]
    public var likelihood: LikelihoodKind
    /// σ of the fixed-variance Gaussian likelihood.
    public var sigma: Double

    public init(kind: ModelKind, image: ImageShape, hiddenSize: Int = 400, latentSize: Int,
                convChannels: [Int] = [32, 64], likelihood: LikelihoodKind, sigma: Double = 1) {
        self.kind = kind
        self.image = image
        self.hiddenSize = hiddenSize
        self.latentSize = latentSize
        self.convChannels = convChannels
        self.likelihood = likelihood
        self.sigma = sigma
    }

    public init(_ c: TrainingConfiguration, image: ImageShape) {
        self.init(kind: c.model, image: image, hiddenSize: c.hiddenSize, latentSize: c.latentSize,
                  convChannels: c.convChannels, likelihood: c.likelihood, sigma: c.sigma)
    }

    /// "mlp 784-400-20" or "conv 1×28×28 → 32, 64 → 16".
    public var summary: String {
        switch kind {
        case .mlp: return "mlp \(image.size)-\(hiddenSize)-\(latentSize)"
        case .conv: return "conv \(image) → \(convChannels.map(String.init).joined(separator: ", ")) → \(latentSize)"
        }
    }

    /// The observation model p(x | z).
    public var observationModel: Likelihood {
        switch likelihood {
        case .bernoulli: return .bernoulli
        case .gaussian: return .gaussian(logVariance: Float(2 * Foundation.log(sigma)))
        case .gaussianLearned: return .gaussianLearned
        }
    }
}

/// The resolved settings of a training run (written to config.json).
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    /// Directory holding the training and test files (see `DatasetDirectory`).
    public var data: String = DatasetDirectory.debianFashionMNIST
    /// Explicit files, instead of or overriding those found in `data`.
    public var trainFile: String? = nil
    public var testFile: String? = nil
    public var trainLabels: String? = nil
    public var testLabels: String? = nil
    /// Without a test file: the fraction of the training set held out (seeded).
    public var testFraction: Double? = nil
    public var model: ModelKind = .mlp
    public var likelihood: LikelihoodKind = .bernoulli
    /// σ of `--likelihood gaussian`.
    public var sigma = 1.0
    public var hiddenSize = 400
    /// Latent dimensions (the conv model's default is 16, set when a run starts).
    public var latentSize = 20
    public var convChannels = [32, 64]
    public var epochs = 10
    /// Global batch: samples per step summed over all ranks.
    public var batchSize = 128
    public var learningRate = 1e-3
    public var beta = 1.0
    /// Steps over which the KL weight ramps linearly from 0 to β (0: none).
    public var klWarmupSteps = 0
    /// Free bits λ per latent dimension, nats (Kingma et al. 2016); 0: none.
    public var freeBits = 0.0
    public var seed: UInt64 = 1
    /// Where rank 0 writes everything.
    public var runDirectory = ""
    /// Stop after this many steps in total (nil: run all epochs).
    public var maxSteps: Int? = nil
    /// Log training metrics every this many steps.
    public var logEvery = 50
    /// Compare a hash of every rank's parameters at each epoch end.
    public var verifyReplicas = false
    /// OpenBLAS threads per rank.
    public var threads = 1
    /// Checkpoint every this many steps (nil: at each epoch end), and at the end.
    public var checkpointEvery: Int? = nil
    /// Checkpoints kept (the newest).
    public var keepCheckpoints = 3
    /// Test samples per forward pass during evaluation, per rank.
    public var evaluationBatchSize = 500

    public init() {}
}

/// A setting given on the command line: applied over the defaults for a new
/// run, or over a checkpoint's configuration when resuming.
public struct ConfigurationOverride {
    /// The command-line option, for messages.
    public let option: String
    let apply: (inout TrainingConfiguration) -> Void

    public init<Value>(_ option: String, _ keyPath: WritableKeyPath<TrainingConfiguration, Value>, _ value: Value) {
        self.option = option
        apply = { $0[keyPath: keyPath] = value }
    }
}

extension TrainingConfiguration {
    /// This configuration with `overrides` applied in order.
    public func applying(_ overrides: [ConfigurationOverride]) -> TrainingConfiguration {
        var c = self
        for o in overrides { o.apply(&c) }
        return c
    }

    /// Settings a resumed run must keep: they fix the parameter shapes, the
    /// batches, or the random streams that make resumption exact.
    static let fixedOnResume: [(option: String, differs: @Sendable (TrainingConfiguration, TrainingConfiguration) -> Bool)] = [
        ("--model", { $0.model != $1.model }),
        ("--likelihood", { $0.likelihood != $1.likelihood }),
        ("--conv-channels", { $0.convChannels != $1.convChannels }),
        ("--hidden-dim", { $0.hiddenSize != $1.hiddenSize }),
        ("--latent-dim", { $0.latentSize != $1.latentSize }),
        ("--batch-size", { $0.batchSize != $1.batchSize }),
        ("--seed", { $0.seed != $1.seed }),
    ]
}
