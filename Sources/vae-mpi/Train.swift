import ArgumentParser
import Collectives
import CSystem
import Datasets
import Foundation
import TensorCore
import Training
import VAEModel

extension Likelihood.Kind: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension KernelLibrary: ExpressibleByArgument {}
extension ExactReduction: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (the default subcommand).",
        discussion: """
            With no options: the PyTorch example's VAE (784-400-20, Bernoulli likelihood, \
            Adam lr 1e-3, global batch 128, 10 epochs, seed 1) on Fashion-MNIST from \
            Debian's dataset-fashion-mnist. Rank 0 writes config.json, metrics.jsonl, \
            TensorBoard events, sample and reconstruction grids and checkpoints into the \
            run directory.

            \(OptionName.resume) continues a run from a checkpoint (a run directory resumes from its \
            latest one). Options given with it override the checkpoint's configuration, \
            except those that fix the model, the batches or the random streams \
            (\(Train.fixedOnResume.map(\.description).joined(separator: ", "))). \
            With the same number of ranks the result is bit-identical to an uninterrupted \
            run; with another number it continues from the next epoch boundary.
            """)

    /// The options a resumed run must leave as the checkpoint has them.
    static let fixedOnResume: [OptionName] = [.model, .likelihood, .sigma, .hiddenDim, .latentDim, .convChannels,
                                          .conditional, .batchSize, .seed, .reproducible, .microShards,
                                          .exactReduction]

    @Option(name: OptionName.data.name, help: ArgumentHelp(
        "Dataset directory: train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz], or train-images.npy and test-images.npy, labels optional; or a folder of PNG and JPEG images: DIR/train and DIR/test, DIR/<class>/…, or flat (default: \(DatasetDirectory.debianFashionMNIST)).",
        valueName: "dir"))
    var data: String?

    @OptionGroup var images: ImageFolderOptions

    @Option(name: OptionName.trainClasses.name, help: ArgumentHelp(
        "Keep only these classes (labels or class names) in the training and test sets: a model of normal data, for vae-mpi score.",
        valueName: "a,b,…"))
    var trainClasses: String?

    @Option(name: OptionName.trainFile.name, help: ArgumentHelp(
        "Training images: IDX (N×H×W, N×C×H×W) or .npy (uint8 or float32; N×H×W, N×C×H×W or N×D), raw or .gz. Overrides \(OptionName.data).",
        valueName: "file"))
    var trainFile: String?

    @Option(name: OptionName.testFile.name, help: ArgumentHelp("Test images, in the same formats.", valueName: "file"))
    var testFile: String?

    @Option(name: OptionName.trainLabels.name, help: ArgumentHelp("Labels of the training images (IDX or .npy integers).", valueName: "file"))
    var trainLabels: String?

    @Option(name: OptionName.testLabels.name, help: ArgumentHelp("Labels of the test images.", valueName: "file"))
    var testLabels: String?

    @Option(name: OptionName.testFraction.name, help: ArgumentHelp(
        "Without a test file: hold out this fraction of the training images (seeded) as the test set.", valueName: "f"))
    var testFraction: Double?

    @Option(name: OptionName.model.name, help: ArgumentHelp(
        "Architecture: mlp (PyTorch's example VAE) or conv (one stride-2 convolution per \(OptionName.convChannels) entry; H and W divisible by 2^stages) (default: mlp).",
        valueName: Architecture.familyNames.joined(separator: "|")))
    var model: String?

    @Option(name: OptionName.likelihood.name, help: "p(x | z): bernoulli (data in [0, 1]), gaussian (fixed \(OptionName.sigma)) or gaussian-learned (per-pixel variance head) (default: bernoulli).")
    var likelihood: Likelihood.Kind?

    @Option(name: OptionName.sigma.name, help: "σ of \(OptionName.likelihood) gaussian (default: 1).")
    var sigma: Double?

    @Option(name: OptionName.convChannels.name, help: ArgumentHelp(
        "Channels of the conv model's stride-2 convolutions, one stage each, mirrored by the decoder (default: 32,64; e.g. 32,64,128,256 for 64×64 images).",
        valueName: "c1,c2,…"))
    var convChannels: String?

    @Flag(name: OptionName.conditional.name,
          help: "Conditional VAE (Sohn et al. 2015): the one-hot label enters the encoder and, beside z, the decoder. Needs labelled data.")
    var conditional = false

    @Option(name: OptionName.klWarmupSteps.name, help: "Ramp the KL weight linearly from 0 to β over this many steps (default: 0, no ramp).")
    var klWarmupSteps: Int?

    @Option(name: OptionName.freeBits.name, help: ArgumentHelp(
        "Free bits λ: each latent dimension's KL (global batch mean) counts as at least λ nats (Kingma et al. 2016) (default: 0).",
        valueName: "nats"))
    var freeBits: Double?

    @Option(name: OptionName.epochs.name, help: "Passes over the training set (default: 10).")
    var epochs: Int?

    @Option(name: OptionName.batchSize.name, help: "Global batch size: samples per step summed over all ranks (default: 128).")
    var batchSize: Int?

    @Option(name: OptionName.lr.name, help: ArgumentHelp("Adam learning rate (default: 0.001).", valueName: "lr"))
    var learningRate: Double?

    @Option(name: OptionName.lrSchedule.name, help: "Learning rate over the run: constant, cosine (to 0 over --epochs), or step (× \(OptionName.lrDecay) after each of \(OptionName.lrDecayEpochs)) (default: constant).")
    var lrSchedule: LearningRateSchedule.Kind?

    @Option(name: OptionName.lrWarmupSteps.name, help: "Ramp the learning rate linearly from 0 over the first N steps (Goyal et al. 2017, for large global batches) (default: 0).")
    var lrWarmupSteps: Int?

    @Option(name: OptionName.lrDecayEpochs.name, help: ArgumentHelp("\(OptionName.lrSchedule) step: the epochs after which the rate drops.", valueName: "e1,e2,…"))
    var lrDecayEpochs: String?

    @Option(name: OptionName.lrDecay.name, help: ArgumentHelp("\(OptionName.lrSchedule) step: the factor γ of each drop (default: 0.1).", valueName: "γ"))
    var lrDecay: Double?

    @Option(name: OptionName.accumulate.name, help: ArgumentHelp(
        "Gradient accumulation: each optimizer step takes K micro-batches on every rank (one reduction per step); \(OptionName.batchSize) stays the global batch of a step (default: 1).",
        valueName: "k"))
    var accumulate: Int?

    @Option(name: OptionName.latentDim.name, help: ArgumentHelp("Latent dimensions Z (default: 20; conv: 16).", valueName: "z"))
    var latentDim: Int?

    @Option(name: OptionName.hiddenDim.name, help: ArgumentHelp("Hidden units H of the MLP (default: 400).", valueName: "h"))
    var hiddenDim: Int?

    @Option(name: OptionName.beta.name, help: "Weight β of the KL term; 1 is the ELBO (default: 1).")
    var beta: Double?

    @Option(name: OptionName.seed.name, help: "Seed of every random number: initialisation, shuffles, noise (default: 1).")
    var seed: UInt64?

    @Option(name: OptionName.runDir.name, help: ArgumentHelp(
        "Directory for this run's outputs (default: runs/<UTC timestamp>; when resuming, the checkpoint's run).",
        valueName: "dir"))
    var runDirectory: String?

    @Option(name: OptionName.maxSteps.name, help: "Stop after this many steps in total, evaluating and checkpointing there.")
    var maxSteps: Int?

    @Option(name: OptionName.logEvery.name, help: "Log training metrics every this many steps (default: 50).")
    var logEvery: Int?

    @Flag(name: OptionName.verifyReplicas.name, inversion: .prefixedNo,
          help: "Check at each epoch end and at the end that every rank holds identical parameters (default: off).")
    var verifyReplicas: Bool?

    @Option(name: OptionName.threads.name, help: "Kernel threads per rank; ranks are the parallelism (default: 1).")
    var threads: Int?

    @Option(name: OptionName.precision.name, help: "Inputs of matrix products and convolutions: fp32, or bf16 with fp32 accumulation (needs AVX512_BF16 or AMX); parameters, gradients, optimizer and checkpoints stay fp32 (default: fp32).")
    var precision: Precision?

    @Option(name: OptionName.kernels.name, help: "Kernel library: onednn, or openblas (fp32 only, im2col convolutions) (default: onednn).")
    var kernels: KernelLibrary?

    @Option(name: OptionName.gradientPrecision.name, help: "Number format of the gradients the ranks exchange: fp32, or bf16 (half the bytes; each rank's sum and the total rounded to bf16) for slow networks (default: fp32).")
    var gradientPrecision: Precision?

    @Flag(name: OptionName.shardOptimizer.name, inversion: .prefixedNo,
          help: "Shard Adam over the ranks (ZeRO stage 1): reduce-scatter the gradients, update 1/np of the parameters each, allgather them (default: off).")
    var shardOptimizer: Bool?

    @Flag(name: OptionName.reproducible.name, inversion: .prefixedNo,
          help: "Results independent of the number of ranks: global batches in --micro-shards fixed pieces, noise keyed by image, exact sums; every np that divides the micro-shards gives the same bytes, and a run resumes exactly at another np (default: off).")
    var reproducible: Bool?

    @Option(name: OptionName.microShards.name, help: ArgumentHelp("With --reproducible: the fixed pieces of each global batch; the numbers of ranks that give the same results are its divisors (default: 8).", valueName: "v"))
    var microShards: Int?

    @Option(name: OptionName.exactReduction.name, help: "With --reproducible: how the micro-shards' gradients are added exactly: tree (a fixed binary tree; micro-shards and np powers of two; the faster) or fixed-point (64-bit integers; any np dividing the micro-shards) (default: tree).")
    var exactReduction: ExactReduction?

    @Option(name: OptionName.checkpointEvery.name, help: "Checkpoint every this many steps, and at the end (default: at each epoch end).")
    var checkpointEvery: Int?

    @Option(name: OptionName.keepCheckpoints.name, help: "How many of the newest checkpoints to keep (default: 3).")
    var keepCheckpoints: Int?

    @Flag(name: OptionName.keepBest.name, inversion: .prefixedNo,
          help: "Keep the checkpoint with the lowest test loss as checkpoints/best (never pruned) (default: off).")
    var keepBest: Bool?

    @Option(name: OptionName.earlyStop.name, help: ArgumentHelp("Stop after N evaluations (epoch ends) without a lower test loss.", valueName: "n"))
    var earlyStop: Int?

    @Option(name: OptionName.evalBatchSize.name, help: "Test images per forward pass during evaluation (default: 500).")
    var evaluationBatchSize: Int?

    @Option(name: OptionName.resume.name, help: ArgumentHelp("Continue from a checkpoint: a run directory, a .safetensors file or its .json sidecar.",
                                                         valueName: "checkpoint"))
    var resume: String?

    @Option(name: OptionName.collectiveTimeout.name, help: ArgumentHelp(
        "Stall watchdog: a rank that waits this long in one collective prints its rank, host, step and phase, and the job ends with status 4 (0: off) (default: 600).",
        valueName: "seconds"))
    var collectiveTimeout: Double = 600

    @Flag(name: OptionName.profile.name, help: "Print the per-step time breakdown (forward+backward with its GEMM share, allreduce, optimizer, other) at the end.")
    var profile = false

    func validate() throws {
        try require(epochs, atLeast: 1, .epochs)
        try require(batchSize, atLeast: 1, .batchSize)
        try require(latentDim, atLeast: 1, .latentDim)
        try require(hiddenDim, atLeast: 1, .hiddenDim)
        try require(logEvery, atLeast: 1, .logEvery)
        try require(threads, atLeast: 1, .threads)
        try require(keepCheckpoints, atLeast: 1, .keepCheckpoints)
        try require(evaluationBatchSize, atLeast: 1, .evalBatchSize)
        try require(maxSteps, atLeast: 1, .maxSteps)
        try require(checkpointEvery, atLeast: 1, .checkpointEvery)
        try require(klWarmupSteps, atLeast: 0, .klWarmupSteps)
        try require(lrWarmupSteps, atLeast: 0, .lrWarmupSteps)
        try require(accumulate, atLeast: 1, .accumulate)
        try require(earlyStop, atLeast: 1, .earlyStop)
        try require(microShards, atLeast: 1, .microShards)
        if (microShards != nil || exactReduction != nil) && reproducible != true && resume == nil {
            throw invalid(microShards != nil ? .microShards : .exactReduction, "applies with \(OptionName.reproducible)")
        }
        if reproducible == true && shardOptimizer == true {
            throw invalid(.shardOptimizer, "cannot be combined with \(OptionName.reproducible) (its reduction is exact and whole)")
        }
        if reproducible == true && gradientPrecision == .bf16 {
            throw invalid(.gradientPrecision, "bf16 cannot be combined with \(OptionName.reproducible) (its sums are exact)")
        }
        if !(collectiveTimeout.isFinite && collectiveTimeout >= 0) {
            throw invalid(.collectiveTimeout, "must be a number of seconds ≥ 0 (got \(collectiveTimeout))")
        }
        if let lrDecay, !(lrDecay.isFinite && lrDecay > 0) { throw invalid(.lrDecay, "must be a positive number (got \(lrDecay))") }
        if let epochs = try parsedDecayEpochs() {
            guard lrSchedule == .step || lrSchedule == nil else {
                throw invalid(.lrDecayEpochs, "applies to \(OptionName.lrSchedule) step")
            }
            _ = epochs
        }
        if lrSchedule == .step && lrDecayEpochs == nil {
            throw invalid(.lrSchedule, "step needs \(OptionName.lrDecayEpochs), e.g. \(OptionName.lrDecayEpochs) 30,60")
        }
        if let learningRate, !(learningRate.isFinite && learningRate > 0) {
            throw invalid(.lr, "must be a positive number (got \(learningRate))")
        }
        if let beta, !(beta.isFinite && beta >= 0) { throw invalid(.beta, "must be ≥ 0 (got \(beta))") }
        if let runDirectory, runDirectory.isEmpty { throw invalid(.runDir, "must not be empty") }
        if let data, data.isEmpty { throw invalid(.data, "must not be empty") }
        if let sigma, !(sigma.isFinite && sigma > 0) { throw invalid(.sigma, "must be positive (got \(sigma))") }
        if let freeBits, !(freeBits.isFinite && freeBits >= 0) { throw invalid(.freeBits, "must be ≥ 0 (got \(freeBits))") }
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw invalid(.testFraction, "must be between 0 and 1 (got \(testFraction))")
        }
        if let model, Architecture.defaults(family: model) == nil {
            throw invalid(.model, "must be one of \(Architecture.familyNames.joined(separator: ", ")) (got \(model))")
        }
        _ = try parsedConvChannels()
    }

    func parsedDecayEpochs() throws -> [Int]? {
        guard let lrDecayEpochs else { return nil }
        let parts = lrDecayEpochs.split(separator: ",", omittingEmptySubsequences: false)
            .map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }), parts.map({ $0! }) == parts.map({ $0! }).sorted(),
              Set(parts.map { $0! }).count == parts.count else {
            throw invalid(.lrDecayEpochs, "must be increasing positive epoch numbers, like 30,60 (got \(lrDecayEpochs))")
        }
        return parts.map { $0! }
    }

    func parsedConvChannels() throws -> [Int]? {
        guard let convChannels else { return nil }
        let parts = convChannels.split(separator: ",", omittingEmptySubsequences: false)
            .map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.count <= 16, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw invalid(.convChannels, "must be 1 to 16 positive integers, one per stride-2 stage, like 32,64,128 (got \(convChannels))")
        }
        return parts.map { $0! }
    }


    /// Applies the options given to `c`: the defaults of a new run, or the
    /// configuration of the checkpoint `resuming` continues, where the
    /// options of `fixedOnResume` may not change anything.
    func configure(_ c: inout TrainingConfiguration, resuming checkpoint: Checkpoint?,
                   communicator: Communicator) throws {
        func set<Value: Equatable>(_ value: Value?, _ option: OptionName, _ target: inout Value) throws {
            guard let value else { return }
            if let checkpoint, Self.fixedOnResume.contains(option), value != target {
                throw optionError(option, "cannot change when resuming: it fixes the model, the batches or the random "
                                  + "streams of the run in \(checkpoint.path)", communicator)
            }
            target = value
        }
        // Data.
        if let data, data != c.data.directory {
            c.data.directory = data
            c.data.classNames = data == DataSource.debianFashionMNIST.directory
                ? DataSource.debianFashionMNIST.classNames : nil
        }
        if let trainFile { c.data.trainImages = trainFile }
        if let testFile { c.data.testImages = testFile }
        if let trainLabels { c.data.trainLabels = trainLabels }
        if let testLabels { c.data.testLabels = testLabels }
        if let testFraction { c.data.testFraction = testFraction }
        try images.apply(to: &c.data)
        if let trainClasses {
            let names = trainClasses.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !names.isEmpty else { throw optionError(.trainClasses, "names no class", communicator) }
            c.data.trainClasses = names
        }
        if let checkpoint, conditional, c.architecture.conditionalClasses == 0 {
            throw optionError(.conditional, "cannot change when resuming: the model in \(checkpoint.path) is unconditional",
                              communicator)
        }        // Architecture: a family's defaults, then its options.
        var family = c.architecture.family
        try set(model, .model, &family)
        if family != c.architecture.family, let defaults = Architecture.defaults(family: family) {
            c.architecture = defaults
        }
        try set(latentDim, .latentDim, &c.architecture.latentSize)
        switch c.architecture {
        case .mlp(var options):
            try set(hiddenDim, .hiddenDim, &options.hiddenSize)
            c.architecture = .mlp(options)
        case .conv(var options):
            try set(try parsedConvChannels(), .convChannels, &options.channels)
            c.architecture = .conv(options)
        }
        let current = c.architecture.likelihood
        var kind = current.kind
        try set(likelihood, .likelihood, &kind)
        var sigmaValue = 1.0
        if case .gaussian(let s) = current { sigmaValue = s }
        if kind == .gaussian { try set(sigma, .sigma, &sigmaValue) }
        c.architecture.likelihood = Likelihood(kind, sigma: sigmaValue)
        // Objective, optimizer, schedule, outputs.
        try set(beta, .beta, &c.kl.beta)
        try set(klWarmupSteps, .klWarmupSteps, &c.kl.warmupSteps)
        try set(freeBits, .freeBits, &c.kl.freeBits)
        try set(learningRate, .lr, &c.learningRate)
        try set(lrSchedule, .lrSchedule, &c.schedule.kind)
        try set(lrWarmupSteps, .lrWarmupSteps, &c.schedule.warmupSteps)
        try set(try parsedDecayEpochs(), .lrDecayEpochs, &c.schedule.decayEpochs)
        try set(lrDecay, .lrDecay, &c.schedule.decay)
        if c.schedule.kind == .step && c.schedule.decayEpochs.isEmpty {
            throw optionError(.lrSchedule, "step needs \(OptionName.lrDecayEpochs)", communicator)
        }
        try set(accumulate, .accumulate, &c.accumulate)
        try set(keepBest, .keepBest, &c.keepBest)
        if let earlyStop { c.earlyStop = earlyStop }
        try set(epochs, .epochs, &c.epochs)
        try set(batchSize, .batchSize, &c.batchSize)
        try set(seed, .seed, &c.seed)
        try set(runDirectory, .runDir, &c.runDirectory)
        if let maxSteps { c.maxSteps = maxSteps }
        try set(logEvery, .logEvery, &c.logEvery)
        try set(verifyReplicas, .verifyReplicas, &c.verifyReplicas)
        try set(threads, .threads, &c.threads)
        try set(precision, .precision, &c.precision)
        try set(kernels, .kernels, &c.kernels)
        try set(shardOptimizer, .shardOptimizer, &c.shardOptimizer)
        try set(gradientPrecision, .gradientPrecision, &c.gradientPrecision)
        try set(reproducible, .reproducible, &c.reproducible)
        try set(microShards, .microShards, &c.microShards)
        try set(exactReduction, .exactReduction, &c.exactReduction)
        if c.reproducible && c.microShards > c.batchSize {
            throw optionError(.microShards, "\(c.microShards) pieces of a global batch of \(c.batchSize) would leave some empty; "
                              + "use at most \(c.batchSize)", communicator)
        }
        if c.reproducible && !c.exactReduction.supports(microShards: c.microShards) {
            throw optionError(.microShards, "\(c.microShards) is not a power of two, as \(OptionName.exactReduction) tree needs",
                              communicator)
        }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        try set(keepCheckpoints, .keepCheckpoints, &c.keepCheckpoints)
        try set(evaluationBatchSize, .evalBatchSize, &c.evaluationBatchSize)
    }

    func run() throws {
        let options = self
        Execution.collectiveTimeout = collectiveTimeout
        Execution.run { communicator in
            let checkpoint = try options.resume.map { try Checkpoint.load($0, communicator: communicator) }
            var configuration = checkpoint.map(TrainingConfiguration.init(resuming:)) ?? TrainingConfiguration()
            try options.configure(&configuration, resuming: checkpoint, communicator: communicator)
            BLAS.setThreads(configuration.threads)
            var session = TrainingSession(configuration: configuration, resumingFrom: checkpoint,
                                          communicator: communicator, profile: options.profile, faults: .fromEnvironment,
                                          conditional: options.conditional)
            // SIGTERM and SIGINT stop training at the next step, with a checkpoint (rank 0 announces it).
            vm_install_stop_handlers(communicator.rank == 0 ? 1 : 0)
            session.stopRequested = { vm_stop_signal() != 0 }
            try session.run()
        }
    }
}

extension FaultInjection {
    /// The test hooks: VAE_MPI_FAIL_AT=rank:step makes that rank fail there
    /// (the abort path); VAE_MPI_DIVERGE_AT=rank:step nudges one of its
    /// parameters (the replica check).
    static var fromEnvironment: FaultInjection {
        func rankAndStep(_ variable: String) -> (rank: Int, step: Int)? {
            guard let value = ProcessInfo.processInfo.environment[variable] else { return nil }
            let parts = value.split(separator: ":").compactMap { Int($0) }
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
        var stall: (rank: Int, step: Int, phase: CollectiveWatchdog.Phase)? = nil
        if let value = ProcessInfo.processInfo.environment["VAE_MPI_STALL_AT"] {
            let parts = value.split(separator: ":")
            if parts.count == 3, let r = Int(parts[0]), let s = Int(parts[1]),
               let phase = CollectiveWatchdog.Phase(rawValue: String(parts[2])) {
                stall = (r, s, phase)
            }
        }
        return FaultInjection(failure: rankAndStep("VAE_MPI_FAIL_AT"), divergence: rankAndStep("VAE_MPI_DIVERGE_AT"),
                              stall: stall, stopRequest: rankAndStep("VAE_MPI_SIGNAL_AT"))
    }
}
