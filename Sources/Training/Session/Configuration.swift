import Datasets
import TensorCore
import VAEModel

/// The resolved settings of a training run: what config.json and every
/// checkpoint record. Each part is the value that owns its rules: the
/// data source, the architecture (with its likelihood), the KL controls.
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    public var data = DataSource.debianFashionMNIST
    public var architecture = Architecture.mlp(.init())
    public var kl = KLControls()
    /// K, the draws from q per sample of the training objective: nil or 1,
    /// the ELBO; K > 1, the importance-weighted bound (IWAE; with missing
    /// values, MIWAE). Its loss is the bound itself: β stays 1.
    public var trainSamples: Int? = nil
    /// Dropout on the encoder's input in training (Mult-VAE: 0.5): each
    /// value is zeroed with this probability and the rest scaled by
    /// 1/(1 − p), the mask keyed by (seed, rank, sample, step).
    public var inputDropout: Double? = nil
    /// Block shuffling for data streamed from disk (`ShardPlan.blockSize`):
    /// samples per block; nil, a full shuffle.
    public var shuffleBlock: Int? = nil
    /// Run even when --threads exceeds the cores a rank may use.
    public var allowSharedCores: Bool? = nil
    /// Adam's base learning rate, and how it changes over the run.
    public var learningRate = 1e-3
    public var schedule = LearningRateSchedule()
    /// Micro-batches per optimizer step on every rank (gradient accumulation):
    /// `batchSize` stays the global batch of one optimizer step.
    public var accumulate = 1
    /// Keep the checkpoint with the lowest test loss as checkpoints/best.
    public var keepBest = false
    /// Stop after this many evaluations without a lower test loss.
    public var earlyStop: Int? = nil
    public var epochs = 10
    /// Global batch: samples per step summed over all ranks.
    public var batchSize = 128
    public var seed: UInt64 = 1
    /// Stop after this many steps in total (nil: run all epochs).
    public var maxSteps: Int? = nil
    /// Where rank 0 writes everything ("": a fresh runs/<UTC timestamp>).
    public var runDirectory = ""
    /// Log training metrics every this many steps.
    public var logEvery = 50
    /// Checkpoint every this many steps (nil: at each epoch end), and at the end.
    public var checkpointEvery: Int? = nil
    /// Checkpoints kept (the newest).
    public var keepCheckpoints = 3
    /// Test samples per forward pass during evaluation, per rank.
    public var evaluationBatchSize = 500
    /// Compare a hash of every rank's parameters at each epoch end.
    public var verifyReplicas = false
    /// Kernel threads per rank (the executable applies it).
    public var threads = 1
    /// The kernel library and the inputs' number format for matrix products
    /// and convolutions (a resumed run may change them).
    public var kernels = KernelLibrary.onednn
    public var precision = Precision.fp32
    /// Shard Adam over the ranks (ZeRO stage 1) instead of every rank taking
    /// the whole step.
    public var shardOptimizer = false
    /// The number format of the gradients the ranks exchange (bf16: half the
    /// bytes, for slow networks).
    public var gradientPrecision = Precision.fp32
    /// Results independent of the number of ranks: global batches cut into
    /// `microShards` fixed pieces, noise keyed by image and step, and the
    /// pieces' gradients, terms and evaluation sums added exactly
    /// (`exactReduction`). Any np that divides `microShards` (and, for the
    /// tree, is a power of two) gives the same bytes.
    public var reproducible = false
    public var microShards = 8
    public var exactReduction = ExactReduction.tree

    public init() {}

    public init(from decoder: Decoder) throws {
        // Configurations written before these fields existed ran fp32 on OpenBLAS.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decode(DataSource.self, forKey: .data)
        architecture = try c.decode(Architecture.self, forKey: .architecture)
        kl = try c.decode(KLControls.self, forKey: .kl)
        trainSamples = try c.decodeIfPresent(Int.self, forKey: .trainSamples)
        inputDropout = try c.decodeIfPresent(Double.self, forKey: .inputDropout)
        allowSharedCores = try c.decodeIfPresent(Bool.self, forKey: .allowSharedCores)
        shuffleBlock = try c.decodeIfPresent(Int.self, forKey: .shuffleBlock)
        learningRate = try c.decode(Double.self, forKey: .learningRate)
        schedule = try c.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule) ?? LearningRateSchedule()
        accumulate = try c.decodeIfPresent(Int.self, forKey: .accumulate) ?? 1
        keepBest = try c.decodeIfPresent(Bool.self, forKey: .keepBest) ?? false
        earlyStop = try c.decodeIfPresent(Int.self, forKey: .earlyStop)
        epochs = try c.decode(Int.self, forKey: .epochs)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        seed = try c.decode(UInt64.self, forKey: .seed)
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps)
        runDirectory = try c.decode(String.self, forKey: .runDirectory)
        logEvery = try c.decode(Int.self, forKey: .logEvery)
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery)
        keepCheckpoints = try c.decode(Int.self, forKey: .keepCheckpoints)
        evaluationBatchSize = try c.decode(Int.self, forKey: .evaluationBatchSize)
        verifyReplicas = try c.decode(Bool.self, forKey: .verifyReplicas)
        threads = try c.decode(Int.self, forKey: .threads)
        kernels = try c.decodeIfPresent(KernelLibrary.self, forKey: .kernels) ?? .openblas
        precision = try c.decodeIfPresent(Precision.self, forKey: .precision) ?? .fp32
        shardOptimizer = try c.decodeIfPresent(Bool.self, forKey: .shardOptimizer) ?? false
        gradientPrecision = try c.decodeIfPresent(Precision.self, forKey: .gradientPrecision) ?? .fp32
        reproducible = try c.decodeIfPresent(Bool.self, forKey: .reproducible) ?? false
        microShards = try c.decodeIfPresent(Int.self, forKey: .microShards) ?? 8
        exactReduction = try c.decodeIfPresent(ExactReduction.self, forKey: .exactReduction) ?? .tree
    }

    /// The configuration a resumed run starts from: the checkpoint's, in its
    /// own run directory, without the interrupted run's step limit.
    public init(resuming checkpoint: Checkpoint) {
        self = checkpoint.sidecar.configuration
        maxSteps = nil
        runDirectory = checkpoint.runDirectory
    }

    /// K, the draws from q per training sample (1: the ELBO).
    public var samplesPerImage: Int { trainSamples ?? 1 }

    /// Checks every value by the rules of the component that owns it (the
    /// command line checks its options with this too, and a configuration
    /// read from a checkpoint was never parsed as options). Throws
    /// `InvalidSetting` naming the field by its key in config.json.
    public func validate() throws {
        let counts: [(String, Int, ClosedRange<Int>)] = [
            ("epochs", epochs, 1...10_000_000), ("batch_size", batchSize, 1...100_000_000),
            ("log_every", logEvery, 1...Int.max), ("keep_checkpoints", keepCheckpoints, 1...1_000_000),
            ("evaluation_batch_size", evaluationBatchSize, 1...100_000_000), ("threads", threads, 1...4096),
            ("accumulate", accumulate, 1...1_000_000), ("micro_shards", microShards, 1...8192),
        ]
        for (name, value, range) in counts { try InvalidSetting.check(name, value, in: range) }
        for (name, value) in [("max_steps", maxSteps), ("checkpoint_every", checkpointEvery), ("early_stop", earlyStop)] {
            if let value { try InvalidSetting.check(name, value, atLeast: 1) }
        }
        try InvalidSetting.require(learningRate.isFinite && learningRate > 0, "learning_rate",
                                   "must be a positive number (got \(learningRate))")
        func inside(_ parent: String, _ check: () throws -> Void) throws {
            do { try check() } catch let error as InvalidSetting { throw error.inside(parent) }
        }
        try inside("kl") { try kl.validate() }
        if let b = shuffleBlock { try InvalidSetting.check("shuffle_block", b, in: 1...10_000_000) }
        if let p = inputDropout {
            try InvalidSetting.require(p >= 0 && p < 1, "input_dropout", "must be at least 0 and below 1 (got \(p))")
        }
        if let k = trainSamples {
            try InvalidSetting.check("train_samples", k, in: 1...100_000)
            if k > 1 {
                // The bound is the loss: a weighted KL term has no place in it.
                try InvalidSetting.require(kl.beta == 1, "train_samples",
                                           "(\(k)) trains the importance-weighted bound, whose KL weight β is 1 (got β = \(kl.beta))")
                try InvalidSetting.require(kl.warmupSteps == 0, "train_samples",
                                           "(\(k)) trains the importance-weighted bound, which has no KL warm-up")
                try InvalidSetting.require(kl.freeBits == 0, "train_samples",
                                           "(\(k)) trains the importance-weighted bound, which has no free bits")
            }
        }
        try inside("schedule") { try schedule.validate() }
        try inside("data") { try data.validate() }
        try inside("architecture") { try architecture.validate() }
        if reproducible {
            try InvalidSetting.require(microShards <= batchSize, "micro_shards",
                                       "(\(microShards)) must not exceed the batch size (\(batchSize)): some pieces would be empty")
            try InvalidSetting.require(!shardOptimizer, "shard_optimizer",
                                       "cannot be combined with the reproducible mode (its reduction is exact and whole)")
            try InvalidSetting.require(gradientPrecision == .fp32, "gradient_precision",
                                       "must be fp32 in the reproducible mode (its sums are exact)")
            try InvalidSetting.require(exactReduction.supports(microShards: microShards), "micro_shards",
                                       "must be a power of two for the tree reduction (got \(microShards))")
        }
    }

    /// What a resumed run must keep: the model's shapes and likelihood, the
    /// batches, the random streams. Nil if `self` keeps them, else what changed.
    public func changeOnResume(from checkpoint: Checkpoint) -> String? {
        let before = checkpoint.sidecar.configuration
        if architecture != before.architecture {
            return "the architecture (\(before.architecture.summary(for: checkpoint.sidecar.image)), "
                + "\(before.architecture.likelihood) likelihood)"
        }
        if batchSize != before.batchSize { return "the batch size (\(before.batchSize))" }
        if seed != before.seed { return "the seed (\(before.seed))" }
        if samplesPerImage != before.samplesPerImage { return "the training samples (\(before.samplesPerImage))" }
        if shuffleBlock != before.shuffleBlock { return "the shuffle blocks (\(before.shuffleBlock.map(String.init) ?? "none"))" }
        if reproducible != before.reproducible { return "the reproducible mode (\(before.reproducible ? "on" : "off"))" }
        if reproducible && microShards != before.microShards { return "the micro-shards (\(before.microShards))" }
        if reproducible && exactReduction != before.exactReduction {
            return "the exact reduction (\(before.exactReduction.rawValue))"
        }
        return nil
    }
}
