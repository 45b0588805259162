import ArgumentParser
import Collectives
import Datasets
import Foundation
import Training

extension ModelKind: ExpressibleByArgument {}
extension LikelihoodKind: ExpressibleByArgument {}

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
            (--model, --likelihood, --hidden-dim, --latent-dim, --conv-channels, --batch-size, \
            --seed). \
            With the same number of ranks the result is bit-identical to an uninterrupted \
            run; with another number it continues from the next epoch boundary.
            """)

    @Option(name: .long, help: ArgumentHelp(
        "Dataset directory: train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz], or train-images.npy and test-images.npy; labels optional (default: \(DatasetDirectory.debianFashionMNIST)).",
        valueName: "dir"))
    var data: String?

    @Option(name: .customLong("train-file"), help: ArgumentHelp(
        "Training images: IDX (N×H×W, N×C×H×W) or .npy (uint8 or float32; N×H×W, N×C×H×W or N×D), raw or .gz. Overrides --data.",
        valueName: "file"))
    var trainFile: String?

    @Option(name: .customLong("test-file"), help: ArgumentHelp("Test images, in the same formats.", valueName: "file"))
    var testFile: String?

    @Option(name: .customLong("train-labels"), help: ArgumentHelp("Labels of the training images (IDX or .npy integers).", valueName: "file"))
    var trainLabels: String?

    @Option(name: .customLong("test-labels"), help: ArgumentHelp("Labels of the test images.", valueName: "file"))
    var testLabels: String?

    @Option(name: .customLong("test-fraction"), help: ArgumentHelp(
        "Without a test file: hold out this fraction of the training images (seeded) as the test set.", valueName: "f"))
    var testFraction: Double?

    @Option(help: "Architecture: mlp (PyTorch's example VAE) or conv (two stride-2 convolutions; H and W divisible by 4) (default: mlp).")
    var model: ModelKind?

    @Option(help: "p(x | z): bernoulli (data in [0, 1]), gaussian (fixed --sigma) or gaussian-learned (per-pixel variance head) (default: bernoulli).")
    var likelihood: LikelihoodKind?

    @Option(help: "σ of --likelihood gaussian (default: 1).")
    var sigma: Double?

    @Option(name: .customLong("conv-channels"), help: ArgumentHelp("Channels of the conv model's two convolutions (default: 32,64).", valueName: "c1,c2"))
    var convChannels: String?

    @Option(name: .customLong("kl-warmup-steps"), help: "Ramp the KL weight linearly from 0 to β over this many steps (default: 0, no ramp).")
    var klWarmupSteps: Int?

    @Option(name: .customLong("free-bits"), help: ArgumentHelp(
        "Free bits λ: each latent dimension's KL (global batch mean) counts as at least λ nats (Kingma et al. 2016) (default: 0).",
        valueName: "nats"))
    var freeBits: Double?

    @Option(help: "Passes over the training set (default: 10).")
    var epochs: Int?

    @Option(name: .long, help: "Global batch size: samples per step summed over all ranks (default: 128).")
    var batchSize: Int?

    @Option(name: .customLong("lr"), help: ArgumentHelp("Adam learning rate (default: 0.001).", valueName: "lr"))
    var learningRate: Double?

    @Option(name: .customLong("latent-dim"), help: ArgumentHelp("Latent dimensions Z (default: 20; conv: 16).", valueName: "z"))
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
        if let sigma, !(sigma.isFinite && sigma > 0) { throw ValidationError("--sigma must be positive (got \(sigma))") }
        if let klWarmupSteps, klWarmupSteps < 0 { throw ValidationError("--kl-warmup-steps must be ≥ 0 (got \(klWarmupSteps))") }
        if let freeBits, !(freeBits.isFinite && freeBits >= 0) { throw ValidationError("--free-bits must be ≥ 0 (got \(freeBits))") }
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be between 0 and 1 (got \(testFraction))")
        }
        _ = try parsedConvChannels()
    }

    func parsedConvChannels() throws -> [Int]? {
        guard let convChannels else { return nil }
        let parts = convChannels.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let c1 = parts[0], let c2 = parts[1], c1 >= 1, c2 >= 1 else {
            throw ValidationError("--conv-channels must be two positive integers, like 32,64 (got \(convChannels))")
        }
        return [c1, c2]
    }

    /// The options given, as overrides of the defaults or of a checkpoint's configuration.
    var overrides: [ConfigurationOverride] {
        var o: [ConfigurationOverride] = []
        func add<Value>(_ value: Value?, _ option: String, _ keyPath: WritableKeyPath<TrainingConfiguration, Value>) {
            if let value { o.append(ConfigurationOverride(option, keyPath, value)) }
        }
        add(data, "--data", \.data)
        if let trainFile { o.append(ConfigurationOverride("--train-file", \.trainFile, trainFile)) }
        if let testFile { o.append(ConfigurationOverride("--test-file", \.testFile, testFile)) }
        if let trainLabels { o.append(ConfigurationOverride("--train-labels", \.trainLabels, trainLabels)) }
        if let testLabels { o.append(ConfigurationOverride("--test-labels", \.testLabels, testLabels)) }
        if let testFraction { o.append(ConfigurationOverride("--test-fraction", \.testFraction, testFraction)) }
        add(model, "--model", \.model)
        add(likelihood, "--likelihood", \.likelihood)
        add(sigma, "--sigma", \.sigma)
        add(try? parsedConvChannels(), "--conv-channels", \.convChannels)
        add(klWarmupSteps, "--kl-warmup-steps", \.klWarmupSteps)
        add(freeBits, "--free-bits", \.freeBits)
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
