import Datasets
import VAEModel

/// Which architecture to train.
public enum ModelKind: String, Codable, CaseIterable, Sendable {
    case mlp
}

/// Which observation model p(x | z) to use.
public enum LikelihoodKind: String, Codable, CaseIterable, Sendable {
    case bernoulli

    public var likelihood: Likelihood {
        switch self {
        case .bernoulli: return .bernoulli
        }
    }
}

/// Everything that determines a model's parameter shapes: enough to rebuild
/// it from a checkpoint.
public struct ModelSpec: Codable, Equatable, Sendable {
    public var kind: ModelKind
    public var image: ImageShape
    public var hiddenSize: Int
    public var latentSize: Int
    public var likelihood: LikelihoodKind

    public init(kind: ModelKind, image: ImageShape, hiddenSize: Int, latentSize: Int, likelihood: LikelihoodKind) {
        self.kind = kind
        self.image = image
        self.hiddenSize = hiddenSize
        self.latentSize = latentSize
        self.likelihood = likelihood
    }
}

/// The resolved settings of a training run (written to config.json).
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    /// Directory holding train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz].
    public var data: String = DatasetDirectory.debianFashionMNIST
    public var model: ModelKind = .mlp
    public var likelihood: LikelihoodKind = .bernoulli
    public var hiddenSize = 400
    public var latentSize = 20
    public var epochs = 10
    /// Global batch: samples per step summed over all ranks.
    public var batchSize = 128
    public var learningRate = 1e-3
    public var beta = 1.0
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
        ("--hidden-dim", { $0.hiddenSize != $1.hiddenSize }),
        ("--latent-dim", { $0.latentSize != $1.latentSize }),
        ("--batch-size", { $0.batchSize != $1.batchSize }),
        ("--seed", { $0.seed != $1.seed }),
    ]
}
