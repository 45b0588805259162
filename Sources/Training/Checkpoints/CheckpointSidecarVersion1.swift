import Datasets
import TensorCore
import VAEModel

/// The sidecar of format version 1 (vae-mpi before the architecture and the
/// data source became values): a flat configuration and a `model` spec.
/// Read so that runs checkpointed by an earlier build still resume and load.
struct CheckpointSidecarVersion1: Decodable {
    struct Configuration: Decodable {
        var data: String
        var trainFile: String?
        var testFile: String?
        var trainLabels: String?
        var testLabels: String?
        var testFraction: Double?
        var model: String
        /// "bernoulli", "gaussian" or "gaussian-learned".
        var likelihood: String
        var sigma: Double
        var hiddenSize: Int
        var latentSize: Int
        var convChannels: [Int]
        var epochs: Int
        var batchSize: Int
        var learningRate: Double
        var beta: Double
        var klWarmupSteps: Int
        var freeBits: Double
        var seed: UInt64
        var runDirectory: String
        var maxSteps: Int?
        var logEvery: Int
        var verifyReplicas: Bool
        var threads: Int
        var checkpointEvery: Int?
        var keepCheckpoints: Int
        var evaluationBatchSize: Int
    }

    struct ModelSpec: Decodable {
        var image: ImageShape
    }

    var tensorsFile: String
    var step: Int
    var epoch: Int
    var stepInEpoch: Int
    var stepsPerEpoch: Int
    var worldSize: Int
    var samplesSeen: Int
    var optimizer: CheckpointSidecar.OptimizerState
    var rng: CheckpointSidecar.RandomState
    var configuration: Configuration
    var model: ModelSpec
    var checksums: [String: String]
    var createdAt: String

    func upgraded() throws -> CheckpointSidecar {
        let c = configuration
        var new = TrainingConfiguration()
        // Version 1 knew Fashion-MNIST's class names from its path.
        new.data = DataSource(directory: c.data, trainImages: c.trainFile, testImages: c.testFile,
                              trainLabels: c.trainLabels, testLabels: c.testLabels, testFraction: c.testFraction,
                              classNames: c.data == DataSource.debianFashionMNIST.directory
                                  ? DataSource.debianFashionMNIST.classNames : nil)
        let likelihood = try Likelihood(named: c.likelihood,
                                        settings: LikelihoodSettings(sigma: c.likelihood == GaussianLikelihood.name ? c.sigma : nil))
        switch c.model {
        case MLPVAE.Options.family:
            new.architecture = .mlp(.init(hiddenSize: c.hiddenSize, latentSize: c.latentSize, likelihood: likelihood))
        case ConvVAE.Options.family:
            new.architecture = .conv(.init(channels: c.convChannels, latentSize: c.latentSize, likelihood: likelihood))
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "unknown model \"\(c.model)\""))
        }
        new.kl = KLControls(beta: c.beta, warmupSteps: c.klWarmupSteps, freeBits: c.freeBits)
        new.learningRate = c.learningRate
        new.epochs = c.epochs
        new.batchSize = c.batchSize
        new.seed = c.seed
        new.maxSteps = c.maxSteps
        new.runDirectory = c.runDirectory
        new.logEvery = c.logEvery
        new.checkpointEvery = c.checkpointEvery
        new.keepCheckpoints = c.keepCheckpoints
        new.evaluationBatchSize = c.evaluationBatchSize
        new.verifyReplicas = c.verifyReplicas
        new.threads = c.threads
        var sidecar = CheckpointSidecar(
            tensorsFile: tensorsFile,
            position: TrainingPosition(step: step, epoch: epoch, stepInEpoch: stepInEpoch, samplesSeen: samplesSeen),
            stepsPerEpoch: stepsPerEpoch, worldSize: worldSize, adam: Adam(parameterCount: 0),
            configuration: new, image: model.image, checksums: checksums)
        sidecar.optimizer = optimizer
        sidecar.rng = rng
        sidecar.createdAt = createdAt
        sidecar.formatVersion = 1
        return sidecar
    }
}
