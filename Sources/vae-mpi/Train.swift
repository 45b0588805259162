import ArgumentParser
import Collectives
import Datasets
import Foundation
import TensorCore
import Training
import VAEModel

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (the default subcommand).",
        discussion: """
            With no options: the PyTorch example's VAE (784-400-20, Bernoulli likelihood, \
            Adam lr 1e-3, global batch 128, 10 epochs, seed 1) on Fashion-MNIST from \
            Debian's dataset-fashion-mnist. Rank 0 writes config.json, metrics.jsonl, \
            sample and reconstruction grids and checkpoints into the run directory.
            """)

    @Option(name: .long, help: ArgumentHelp(
        "Dataset directory holding train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz] (labels optional).",
        valueName: "dir"))
    var data: String = DatasetDirectory.debianFashionMNIST

    @Option(help: "Passes over the training set.")
    var epochs: Int = 10

    @Option(name: .long, help: "Global batch size: samples per step summed over all ranks.")
    var batchSize: Int = 128

    @Option(name: .customLong("lr"), help: "Adam learning rate.")
    var learningRate: Double = 1e-3

    @Option(name: .customLong("latent-dim"), help: "Latent dimensions Z.")
    var latentDim: Int = 20

    @Option(name: .customLong("hidden-dim"), help: "Hidden units H of the MLP encoder and decoder.")
    var hiddenDim: Int = 400

    @Option(help: "Weight β of the KL term (1: the ELBO).")
    var beta: Double = 1

    @Option(help: "Seed of every random number (initialisation, shuffles, noise).")
    var seed: UInt64 = 1

    @Option(name: .customLong("run-dir"), help: ArgumentHelp(
        "Directory for this run's outputs (default: runs/<UTC timestamp>).", valueName: "dir"))
    var runDirectory: String?

    @Option(name: .long, help: "Stop after this many steps in total (evaluating and checkpointing there).")
    var maxSteps: Int?

    @Option(name: .long, help: "Log training metrics every this many steps.")
    var logEvery: Int = 50

    @Flag(name: .long, help: "Check that every rank holds identical parameters at each epoch end and at the end.")
    var verifyReplicas = false

    @Option(help: "OpenBLAS threads per rank (ranks are the parallelism; default 1).")
    var threads: Int = 1

    @Option(name: .long, help: "Checkpoint every this many steps (default: at each epoch end), and always at the end.")
    var checkpointEvery: Int?

    @Option(name: .long, help: "How many of the newest checkpoints to keep.")
    var keepCheckpoints: Int = 3

    @Option(name: .customLong("eval-batch-size"), help: "Test images per forward pass during evaluation.")
    var evaluationBatchSize: Int = 500

    @Flag(help: "Print the per-step time breakdown (forward+backward with its GEMM share, allreduce, optimizer, other) at the end.")
    var profile = false

    func validate() throws {
        func positive(_ value: Int, _ option: String) throws {
            guard value >= 1 else { throw ValidationError("\(option) must be at least 1 (got \(value))") }
        }
        try positive(epochs, "--epochs")
        try positive(batchSize, "--batch-size")
        try positive(latentDim, "--latent-dim")
        try positive(hiddenDim, "--hidden-dim")
        try positive(logEvery, "--log-every")
        try positive(threads, "--threads")
        try positive(keepCheckpoints, "--keep-checkpoints")
        try positive(evaluationBatchSize, "--eval-batch-size")
        if let maxSteps { try positive(maxSteps, "--max-steps") }
        if let checkpointEvery { try positive(checkpointEvery, "--checkpoint-every") }
        guard learningRate.isFinite, learningRate > 0 else {
            throw ValidationError("--lr must be a positive number (got \(learningRate))")
        }
        guard beta.isFinite, beta >= 0 else { throw ValidationError("--beta must be ≥ 0 (got \(beta))") }
        if let runDirectory, runDirectory.isEmpty { throw ValidationError("--run-dir must not be empty") }
    }

    func makeConfiguration() -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.data = data
        c.epochs = epochs
        c.batchSize = batchSize
        c.learningRate = learningRate
        c.latentSize = latentDim
        c.hiddenSize = hiddenDim
        c.beta = beta
        c.seed = seed
        c.runDirectory = runDirectory ?? ""
        c.maxSteps = maxSteps
        c.logEvery = logEvery
        c.verifyReplicas = verifyReplicas
        c.threads = threads
        c.checkpointEvery = checkpointEvery
        c.keepCheckpoints = keepCheckpoints
        c.evaluationBatchSize = evaluationBatchSize
        return c
    }

    func run() throws {
        let configuration = makeConfiguration()
        let profile = self.profile
        Execution.run { communicator in
            try TrainingSession(configuration: configuration, communicator: communicator, profile: profile).run()
        }
    }
}
