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

    public init() {}

    public init(from decoder: Decoder) throws {
        // Configurations written before these fields existed ran fp32 on OpenBLAS.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decode(DataSource.self, forKey: .data)
        architecture = try c.decode(Architecture.self, forKey: .architecture)
        kl = try c.decode(KLControls.self, forKey: .kl)
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
    }

    /// The configuration a resumed run starts from: the checkpoint's, in its
    /// own run directory, without the interrupted run's step limit.
    public init(resuming checkpoint: Checkpoint) {
        self = checkpoint.sidecar.configuration
        maxSteps = nil
        runDirectory = checkpoint.runDirectory
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
        return nil
    }
}
