import ArgumentParser
import Collectives
import Datasets
import Foundation
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (the default subcommand).",
        discussion: """
            With no options: the PyTorch example's VAE (784-400-20, Bernoulli likelihood, \
            Adam lr 1e-3, global batch 128, 10 epochs, seed 1) on Fashion-MNIST from \
            Debian's dataset-fashion-mnist. Rank 0 writes config.json, metrics.jsonl, \
            TensorBoard events, sample and reconstruction grids and checkpoints into the \
            run directory.

            --resume continues a run from a checkpoint (a run directory resumes from its \
            latest one). Options given with it override the checkpoint's configuration, \
            except those that fix the model, the batches or the random streams \
            (--model, --likelihood, --hidden-dim, --latent-dim, --batch-size, --seed). \
            With the same number of ranks the result is bit-identical to an uninterrupted \
            run; with another number it continues from the next epoch boundary.
            """)

    @Option(name: .long, help: ArgumentHelp(
        "Dataset directory with train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz], labels optional (default: \(DatasetDirectory.debianFashionMNIST)).",
        valueName: "dir"))
    var data: String?

    @Option(help: "Passes over the training set (default: 10).")
    var epochs: Int?

    @Option(name: .long, help: "Global batch size: samples per step summed over all ranks (default: 128).")
    var batchSize: Int?

    @Option(name: .customLong("lr"), help: ArgumentHelp("Adam learning rate (default: 0.001).", valueName: "lr"))
    var learningRate: Double?

    @Option(name: .customLong("latent-dim"), help: ArgumentHelp("Latent dimensions Z (default: 20).", valueName: "z"))
    var latentDim: Int?

    @Option(name: .customLong("hidden-dim"), help: ArgumentHelp("Hidden units H of the MLP (default: 400).", valueName: "h"))
    var hiddenDim: Int?

    @Option(help: "Weight β of the KL term; 1 is the ELBO (default: 1).")
    var beta: Double?

    @Option(help: "Seed of every random number: initialisation, shuffles, noise (default: 1).")
    var seed: UInt64?

    @Option(name: .customLong("run-dir"), help: ArgumentHelp(
        "Directory for this run's outputs (default: runs/<UTC timestamp>; when resuming, the checkpoint's run).",
        valueName: "dir"))
    var runDirectory: String?

    @Option(name: .long, help: "Stop after this many steps in total, evaluating and checkpointing there.")
    var maxSteps: Int?

    @Option(name: .long, help: "Log training metrics every this many steps (default: 50).")
    var logEvery: Int?

    @Flag(name: .customLong("verify-replicas"), inversion: .prefixedNo,
          help: "Check at each epoch end and at the end that every rank holds identical parameters (default: off).")
    var verifyReplicas: Bool?

    @Option(help: "OpenBLAS threads per rank; ranks are the parallelism (default: 1).")
    var threads: Int?

    @Option(name: .long, help: "Checkpoint every this many steps, and at the end (default: at each epoch end).")
    var checkpointEvery: Int?

    @Option(name: .long, help: "How many of the newest checkpoints to keep (default: 3).")
    var keepCheckpoints: Int?

    @Option(name: .customLong("eval-batch-size"), help: "Test images per forward pass during evaluation (default: 500).")
    var evaluationBatchSize: Int?

    @Option(help: ArgumentHelp("Continue from a checkpoint: a run directory, a .safetensors file or its .json sidecar.",
                               valueName: "checkpoint"))
    var resume: String?

    @Flag(help: "Print the per-step time breakdown (forward+backward with its GEMM share, allreduce, optimizer, other) at the end.")
    var profile = false

    func validate() throws {
        func positive(_ value: Int?, _ option: String) throws {
            if let value, value < 1 { throw ValidationError("\(option) must be at least 1 (got \(value))") }
        }
        try positive(epochs, "--epochs")
        try positive(batchSize, "--batch-size")
        try positive(latentDim, "--latent-dim")
        try positive(hiddenDim, "--hidden-dim")
        try positive(logEvery, "--log-every")
        try positive(threads, "--threads")
        try positive(keepCheckpoints, "--keep-checkpoints")
        try positive(evaluationBatchSize, "--eval-batch-size")
        try positive(maxSteps, "--max-steps")
        try positive(checkpointEvery, "--checkpoint-every")
        if let learningRate, !(learningRate.isFinite && learningRate > 0) {
            throw ValidationError("--lr must be a positive number (got \(learningRate))")
        }
        if let beta, !(beta.isFinite && beta >= 0) { throw ValidationError("--beta must be ≥ 0 (got \(beta))") }
        if let runDirectory, runDirectory.isEmpty { throw ValidationError("--run-dir must not be empty") }
        if let data, data.isEmpty { throw ValidationError("--data must not be empty") }
    }

    /// The options given, as overrides of the defaults or of a checkpoint's configuration.
    var overrides: [ConfigurationOverride] {
        var o: [ConfigurationOverride] = []
        func add<Value>(_ value: Value?, _ option: String, _ keyPath: WritableKeyPath<TrainingConfiguration, Value>) {
            if let value { o.append(ConfigurationOverride(option, keyPath, value)) }
        }
        add(data, "--data", \.data)
        add(epochs, "--epochs", \.epochs)
        add(batchSize, "--batch-size", \.batchSize)
        add(learningRate, "--lr", \.learningRate)
        add(latentDim, "--latent-dim", \.latentSize)
        add(hiddenDim, "--hidden-dim", \.hiddenSize)
        add(beta, "--beta", \.beta)
        add(seed, "--seed", \.seed)
        add(runDirectory, "--run-dir", \.runDirectory)
        if let maxSteps { o.append(ConfigurationOverride("--max-steps", \.maxSteps, maxSteps)) }
        add(logEvery, "--log-every", \.logEvery)
        add(verifyReplicas, "--verify-replicas", \.verifyReplicas)
        add(threads, "--threads", \.threads)
        if let checkpointEvery { o.append(ConfigurationOverride("--checkpoint-every", \.checkpointEvery, checkpointEvery)) }
        add(keepCheckpoints, "--keep-checkpoints", \.keepCheckpoints)
        add(evaluationBatchSize, "--eval-batch-size", \.evaluationBatchSize)
        return o
    }

    func run() throws {
        let (overrides, resume, profile) = (self.overrides, self.resume, self.profile)
        Execution.run { communicator in
            try TrainingSession(overrides: overrides, resume: resume, communicator: communicator, profile: profile).run()
        }
    }
}
