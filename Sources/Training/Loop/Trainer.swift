import _Differentiation
import Collectives
import Datasets
import TensorCore
import VAEModel
#if canImport(Glibc)
import Glibc
#endif

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    public var epochsCompleted: Int
    public var samplesSeen: Int
    public var finalEvaluation: EvaluationResult?
    public var timings: StepTimings
    public var trainingSeconds: Double
    public var runDirectory: String
    /// Set when `--early-stop` ended the run: why.
    public var earlyStop: String? = nil
    /// Set when a stop request (a signal) ended the run after a checkpoint:
    /// the run can resume from it.
    public var interrupted = false
    public var progress = EvaluationProgress()
}

/// The data-parallel training loop (docs/ARCHITECTURE.md, "One training step"), and nothing else: every
/// rank runs it on its own shard; the optimizer makes the gradients global,
/// the recorder does rank 0's duties. There is no `if mpi` here: with one
/// rank the communicator is the identity.
public final class Trainer<Model: VariationalAutoencoder> {
    let configuration: TrainingConfiguration
    let communicator: Communicator
    let architecture: Architecture
    let image: ImageShape
    let data: TrainingData
    let recorder: RunRecorder
    /// The backend of the training steps (with the profiler, if any, and the
    /// optimizer's gradient sink); evaluation and pictures run on
    /// `backend.unprofiled`.
    let backend: Backend
    let faults: FaultInjection

    var model: Model
    let optimizer: DataParallelOptimizer
    var position = TrainingPosition()
    var timings = StepTimings()
    /// The step at which the epoch-end duties last ran, and the last checkpoint's.
    var lastFinishedStep: Int? = nil
    var lastCheckpointStep: Int? = nil
    /// The best test loss so far, and evaluations since (best checkpoint, early stopping).
    var progress = EvaluationProgress()
    /// Why the run stopped early, once it has.
    var earlyStop: String? = nil
    /// Whether this rank has been asked to stop (a signal); the ranks agree
    /// in the step's reduction and stop together after it.
    public var stopRequested: () -> Bool = { false }
    var interrupted = false
    /// What resuming did, for rank 0 to print.
    public private(set) var resumeNote: String? = nil

    var rank: Int { communicator.rank }
    /// The stall watchdog, told the phase and step (nil without MPI or a timeout).
    var watchdog: CollectiveWatchdog? { communicator.watchdog }

    /// Takes this rank's shard, creates the run directory (rank 0) and
    /// initialises the model: drawn on rank 0 and broadcast, or from
    /// `checkpoint` (which every rank holds). Setup errors on any rank end
    /// every rank cleanly (see `Communicator.collectively`).
    public convenience init<Options: ArchitectureOptions>(
        _ options: Options, configuration: TrainingConfiguration, data: DataSplits, communicator: Communicator,
        console: Console, resumingFrom checkpoint: Checkpoint? = nil, backend: Backend,
        faults: FaultInjection = FaultInjection()
    ) throws where Options.Model == Model {
        try self.init(options, configuration: configuration,
                      data: ShardedData(data, batchSize: configuration.batchSize, seed: configuration.seed,
                                        rank: configuration.reproducible ? 0 : communicator.rank,
                                        worldSize: configuration.reproducible ? 1 : communicator.size),
                      communicator: communicator, console: console, resumingFrom: checkpoint, backend: backend,
                      faults: faults)
    }

    public init<Options: ArchitectureOptions>(
        _ options: Options, configuration: TrainingConfiguration, data: ShardedData, communicator: Communicator,
        console: Console, resumingFrom checkpoint: Checkpoint? = nil, backend: Backend,
        faults: FaultInjection = FaultInjection()
    ) throws where Options.Model == Model {
        self.configuration = configuration
        self.communicator = communicator
        self.faults = faults
        architecture = options.architecture
        image = data.shape
        self.data = TrainingData(data, seed: configuration.seed, rank: communicator.rank,
                                 classes: options.conditionalClasses,
                                 microShards: configuration.reproducible ? configuration.microShards : nil,
                                 worldSize: communicator.size)
        let reproducible = configuration.reproducible
            ? (microShards: configuration.microShards, method: configuration.exactReduction) : nil
        let termCount = ELBOTerms.reported.count
        if let checkpoint {
            let model = try communicator.collectively { try checkpoint.model(options) }
            let layout = model.parameterLayout
            var adam = try communicator.collectively { try checkpoint.adam(layout: layout) }
            adam.learningRate = Float(configuration.learningRate)
            self.model = model
            optimizer = try DataParallelOptimizer(model: model, layout: layout, adam: adam, termCount: termCount,
                                                  communicator: communicator, sharded: configuration.shardOptimizer,
                                                  gradientPrecision: configuration.gradientPrecision,
                                                  reproducible: reproducible, sharedMemory: Self.sharedMemoryAllowed)
        } else {
            // Rank 0 draws the initial parameters; everyone starts from its copy.
            var model = options.makeModel(for: image, seed: configuration.seed)
            let layout = model.parameterLayout
            var flat = model.flattened(layout: layout)
            try communicator.broadcast(&flat, root: 0)
            flat.withUnsafeBufferPointer { model.assign(from: $0, layout: layout) }
            self.model = model
            optimizer = try DataParallelOptimizer(
                model: model, layout: layout,
                adam: Adam(parameterCount: layout.count, learningRate: Float(configuration.learningRate)),
                termCount: termCount, communicator: communicator, sharded: configuration.shardOptimizer,
                gradientPrecision: configuration.gradientPrecision, reproducible: reproducible,
                sharedMemory: Self.sharedMemoryAllowed)
        }
        // The steps' parameter gradients go straight into the optimizer's buffer.
        var backend = backend
        backend.gradientSink = optimizer.sink
        self.backend = backend
        // The run directory is touched only once the checkpoint has loaded.
        recorder = try RunRecorder(configuration: configuration, communicator: communicator, console: console,
                                   classNames: data.classNames, resumingAt: checkpoint?.sidecar.step)
        if let checkpoint { restorePosition(checkpoint) }
    }

    /// Whether the ranks may reduce gradients through shared memory when they
    /// share a host: yes unless VAE_MPI_SHARED_MEMORY=0 (MPI's collectives then,
    /// for comparison or for a system whose /dev/shm misbehaves).
    static var sharedMemoryAllowed: Bool {
        guard let value = getenv("VAE_MPI_SHARED_MEMORY") else { return true }
        return String(cString: value) != "0"
    }

    /// Lists the images the data loading skipped in the run's metrics.
    func recordSkippedImages(_ bad: [BadImage]) throws {
        try recorder.skippedImages(bad, step: position.step)
    }

    public var layout: ParameterLayout { optimizer.layout }
    public var stepsPerEpoch: Int { data.stepsPerEpoch }
    public var localBatchOfRankZero: Int { data.plan.localBatch(rank: 0) }

    /// Continues where the checkpoint stopped. With the world size (and so
    /// the batches) it was written with, exactly there: the random streams
    /// are keyed by position, so the rest of the run is bit-identical to an
    /// uninterrupted one. Otherwise from the next epoch boundary.
    func restorePosition(_ checkpoint: Checkpoint) {
        let s = checkpoint.sidecar
        position = s.position
        lastFinishedStep = s.step
        lastCheckpointStep = s.step
        progress = s.progress ?? EvaluationProgress()
        // Reproducible batches are global: the same at any world size.
        let sameBatches = (configuration.reproducible || s.worldSize == communicator.size) && s.stepsPerEpoch == stepsPerEpoch
        if !sameBatches && s.stepInEpoch != 0 { position.startNextEpoch() }
        if position.stepInEpoch >= stepsPerEpoch { position.startNextEpoch() }
        var note = "resuming from \(checkpoint.path): step \(s.step), epoch \(s.epoch) (\(s.stepInEpoch) of \(s.stepsPerEpoch) steps done)"
        if sameBatches && s.worldSize != communicator.size {
            note += "; it was written by \(plural(s.worldSize, "rank")), this run has \(communicator.size): "
                + "with --reproducible it continues exactly where it stopped"
        }
        if !sameBatches {
            note += "; it was written by \(plural(s.worldSize, "rank")), this run has \(communicator.size)"
            if s.stepInEpoch != 0 && s.stepInEpoch < s.stepsPerEpoch {
                note += ", so the data position moves to the start of epoch \(position.epoch) (the rest of epoch \(s.epoch) is skipped)"
            }
        }
        resumeNote = note
    }

    // MARK: - The loop

    public func run() throws -> TrainingSummary {
        var lastEvaluation: EvaluationResult? = nil
        let totalSteps = min(configuration.maxSteps ?? Int.max, stepsPerEpoch * configuration.epochs)

        training: while position.epoch <= configuration.epochs {
            let order = data.order(epoch: position.epoch)
            while position.stepInEpoch < stepsPerEpoch {
                if position.step >= totalSteps { break training }
                let report: StepReport
                do {
                    report = try step(order: order)
                } catch let failure as CollectiveFailure {
                    // A non-finite step on data far outside [0, 1]: say what the likely cause is.
                    guard case TrainingError.nonFinite(let step, nil) = failure.underlying else { throw failure }
                    let range = data.shard.count > 0 ? data.shard.valueRange : data.test.valueRange
                    guard range.lowerBound < -10 || range.upperBound > 10 else { throw failure }
                    throw CollectiveFailure(underlying: TrainingError.nonFinite(step: step, unscaledDataRange: range),
                                            reporter: failure.reporter, otherFailedRanks: failure.otherFailedRanks,
                                            concernsRank: failure.concernsRank)
                }
                try recorder.stepFinished(report, at: position, totalSteps: totalSteps)
                if interrupted {
                    // Every rank learnt it in the same reduction: checkpoint here and stop.
                    recorder.console.clearLiveLine()
                    if lastCheckpointStep != position.step { try checkpoint() }
                    break training
                }
                if let every = configuration.checkpointEvery, position.step % every == 0 {
                    let t0 = monotonicSeconds()
                    try checkpoint()
                    // Rank 0 writes alone; the others wait for it here, outside the next step, so that
                    // the wait counts as the checkpoint's time, not as the next step's reduction.
                    try communicator.barrier()
                    recorder.excludeFromThroughput(monotonicSeconds() - t0)
                }
            }
            lastEvaluation = try finishPoint() ?? lastEvaluation
            position.startNextEpoch()
            if earlyStop != nil { break training }
        }
        if position.step > 0 && earlyStop == nil && !interrupted { lastEvaluation = try finishPoint() ?? lastEvaluation }
        recorder.console.clearLiveLine()
        return TrainingSummary(steps: position.step, epochsCompleted: position.epoch - 1,
                               samplesSeen: position.samplesSeen, finalEvaluation: lastEvaluation, timings: timings,
                               trainingSeconds: recorder.elapsed, runDirectory: configuration.runDirectory,
                               earlyStop: earlyStop, interrupted: interrupted, progress: progress)
    }

    // MARK: - One step

    /// The learning rate of the next step (see `LearningRateSchedule`).
    var nextLearningRate: Double {
        configuration.schedule.rate(base: configuration.learningRate, step: position.step + 1, epoch: position.epoch,
                                    totalSteps: configuration.epochs * stepsPerEpoch)
    }

    /// batch, noise; forward and backward (over `accumulate` micro-batches);
    /// reduce; update.
    ///
    /// With `--reproducible`, the step's global batch is cut into V
    /// micro-shards (their shapes fixed by the batch, not by np); this rank
    /// computes its own one by one, each gradient kept alone, and they are
    /// summed exactly over all ranks (`ExactGradientSum`). The noise of an
    /// image is then keyed by (image, step), and with free bits the global KL
    /// per dimension is the micro-shards' rows added in order.
    func step(order: [Int]) throws -> StepReport {
        var clock = PhaseClock()
        let kernelsBefore = backend.profiler?.seconds
        let step = position.step + 1
        watchdog?.set(phase: .data, step: step)
        faults.stallIfDue(rank: rank, step: step, phase: .data)
        // This rank's b images, or (reproducible) the whole step's B images in this rank's micro-shards.
        let indices = data.indices(stepInEpoch: position.stepInEpoch, order: order)
        data.prefetch(stepInEpoch: position.stepInEpoch, order: order)
        // K draws per image: K·Z normals per row (the first Z those of K = 1).
        let z = model.latentSize * configuration.samplesPerImage
        let pieces: [Piece]
        if data.microShards == nil {
            pieces = [Piece(indices: indices, noise: data.noise(count: indices.count, latentSize: z, step: position.step),
                            microShard: nil, step: position.step)]
        } else {
            pieces = data.localMicroShards.map { v in
                let picked = Array(indices[data.microShard(v, of: indices.count)])
                return Piece(indices: picked, noise: data.sampleNoise(picked, latentSize: z, step: position.step), microShard: v,
                             step: position.step)
            }
        }
        try faults.failIfDue(rank: rank, step: step)
        clock.lap(.data)

        let beta = configuration.kl.weight(atStep: step)
        let learningRate = nextLearningRate
        optimizer.learningRate = Float(learningRate)
        watchdog?.set(phase: .forward)
        faults.stallIfDue(rank: rank, step: step, phase: .forward)
        let (terms, globalKL) = try forwardBackward(pieces, beta: beta, clock: &clock)
        if faults.spoilsGradient(rank: rank, step: step) { optimizer.spoilGradient() }
        watchdog?.set(phase: .reduction)
        faults.stallIfDue(rank: rank, step: step, phase: .reduction)
        let stop = stopRequested() || faults.requestsStop(rank: rank, step: step)
        let reduced: DataParallelOptimizer.ReducedStep
        if data.microShards == nil {
            reduced = try optimizer.step(&model, hasGradient: !indices.isEmpty, samples: indices.count,
                                         terms: terms[0] ?? Array(repeating: 0, count: ELBOTerms.reported.count),
                                         step: step, stopRequested: stop, clock: &clock)
        } else {
            let rows = zip(pieces, terms).map { piece, t in t.map { [Float(piece.indices.count)] + $0 } }
            reduced = try optimizer.reproducibleStep(&model, rows: rows, step: step, stopRequested: stop, clock: &clock)
        }
        return finishStep(reduced, clock: clock, kernelsBefore: kernelsBefore, beta: beta, learningRate: learningRate,
                          globalKL: globalKL)
    }

    /// After a step's reduction and update: the position, the timings and the report.
    func finishStep(_ reduced: DataParallelOptimizer.ReducedStep, clock: PhaseClock,
                    kernelsBefore: (gemm: Double, layout: Double, flops: Double)?, beta: Double, learningRate: Double,
                    globalKL: (klPerDimension: [Float], count: Float)?) -> StepReport {
        if reduced.stopRequests > 0 { interrupted = true }
        position.finishStep(samples: Int(reduced.samples))
        faults.divergeIfDue(&model, rank: rank, step: position.step)
        if position.step > StepTimings.warmupSteps {
            let kernels = backend.profiler.map { p in
                (gemm: p.seconds.gemm - kernelsBefore!.gemm, layout: p.seconds.layout - kernelsBefore!.layout,
                 flops: p.seconds.flops - kernelsBefore!.flops)
            } ?? (0, 0, 0)
            timings.add(clock, kernels: kernels)
        }
        let sums = reduced.terms.map(Double.init)
        return StepReport(samples: Double(reduced.samples), terms: sums,
                          objective: configuration.kl.objective(reconstruction: sums[ELBOTerms.Term.reconstruction.rawValue],
                                                                kl: sums[ELBOTerms.Term.kl.rawValue], beta: beta,
                                                                global: globalKL),
                          beta: beta, learningRate: learningRate)
    }

    /// Part of a step's batch whose gradient is computed alone: this rank's
    /// whole local batch, or (`--reproducible`) one micro-shard, whose
    /// gradient is captured for the exact sum.
    struct Piece {
        var indices: [Int]
        /// ε (b, Z) of these images.
        var noise: Tensor
        var microShard: Int?
        /// The global step (0-based): keys the input dropout.
        var step = 0
    }

    /// The micro-batches of a local batch of `count` images: `accumulate`
    /// contiguous ranges whose sizes differ by at most one (empty ones left out).
    func microBatches(_ count: Int) -> [Range<Int>] {
        let k = configuration.accumulate
        return (0..<k).map { ShardPlan.block(count: count, rank: $0, size: k) }.filter { !$0.isEmpty }
    }

    typealias Forward = (value: ELBOTerms, pullback: (ELBOTerms.TangentVector) -> Model)

    /// The forward pass of images `piece.indices[chunk]` (noise: the matching rows of `piece.noise`).
    func forwardPass(_ piece: Piece, chunk: Range<Int>) -> Forward {
        let k = configuration.samplesPerImage
        let z = model.latentSize * k
        let likelihood = architecture.likelihood, backend = self.backend
        let batch = data.batch(Array(piece.indices[chunk]), likelihood: likelihood,
                               inputDropout: configuration.inputDropout, step: piece.step)
        let eps = chunk.count == piece.indices.count ? piece.noise
            : Tensor(shape: [chunk.count, z], scalars: Array(piece.noise.scalars[chunk.lowerBound * z ..< chunk.upperBound * z]))
        let model = self.model
        guard k > 1 else {
            return valueWithPullback(at: model) { m in
                negativeELBO(m, batch: batch, noise: eps, likelihood: likelihood, on: backend)
            }
        }
        return valueWithPullback(at: model) { m in
            m.importanceWeightedTerms(batch: batch, noise: eps, samples: k, likelihood: likelihood, on: backend)
        }
    }

    /// The gradient sums of the negative ELBO over each piece, left in the
    /// optimizer's buffer (and, for micro-shards, captured one by one), and
    /// each piece's sums of the reported terms (nil for an empty piece).
    ///
    /// Each piece goes through in `accumulate` micro-batches, each a forward
    /// and a backward pass, their gradients added in the buffer; the step
    /// still makes one reduction. With free bits, the global batch's KL per
    /// latent dimension is needed before any backward pass, so that the
    /// constraint max(KL_j, λ) applies to the global batch exactly as in
    /// Kingma et al. (2016): every forward pass comes first, one small
    /// reduction sums the pieces' KL over all ranks (exactly, in micro-shard
    /// order, when reproducible), then the backward passes. (The pullbacks
    /// hold on to the parameters; they are gone when this returns, before
    /// Adam writes them in place, which would otherwise copy each tensor.)
    func forwardBackward(_ pieces: [Piece], beta: Double, clock: inout PhaseClock) throws
        -> (terms: [[Float]?], globalKL: (klPerDimension: [Float], count: Float)?)
    {
        let z = model.latentSize
        var terms = [[Float]?](repeating: nil, count: pieces.count)
        func add(_ value: ELBOTerms, to i: Int) {
            let values = value.reportedValues
            terms[i] = terms[i].map { zip($0, values).map { $0 + $1 } } ?? values
        }
        func backward(_ i: Int, _ forwards: [Forward], seed: Tensor) {
            for f in forwards {
                optimizer.addGradient(f.pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: seed)))
            }
            if let shard = pieces[i].microShard { optimizer.captureMicroShard(shard) }
        }
        guard configuration.kl.needsGlobalKLPerDimension else {
            let seed = configuration.kl.klSeed(beta: beta, latentSize: z, global: nil)
            for (i, piece) in pieces.enumerated() where !piece.indices.isEmpty {
                optimizer.beginStep(model)
                for chunk in microBatches(piece.indices.count) {
                    let f = forwardPass(piece, chunk: chunk)
                    add(f.value, to: i)
                    backward(i, [f], seed: seed)
                }
            }
            clock.lap(.forwardBackward)
            return (terms, nil)
        }
        let forwards = pieces.map { piece in microBatches(piece.indices.count).map { forwardPass(piece, chunk: $0) } }
        clock.lap(.forwardBackward)
        // Each piece's row: Σ KL_j over its images (Z values), then its image count.
        let rows = pieces.indices.map { i -> [Float] in
            var row = [Float](repeating: 0, count: z) + [Float(pieces[i].indices.count)]
            for f in forwards[i] {
                add(f.value, to: i)
                let kl = f.value.klPerDimension.scalars
                for j in 0..<z { row[j] += kl[j] }
            }
            return row
        }
        let sums: [Float]
        if data.microShards == nil {
            var row = rows[0]
            try optimizer.reduce(&row)
            sums = row
        } else {
            var table = MicroShardRows(microShards: configuration.microShards, width: z + 1)
            for (i, piece) in pieces.enumerated() where !piece.indices.isEmpty { table.set(piece.microShard!, rows[i]) }
            var none: [Float] = []
            sums = try table.reduced(communicator, extra: &none)
        }
        let globalKL = (klPerDimension: Array(sums[0..<z]), count: sums[z])
        clock.lap(.reduction)
        let seed = configuration.kl.klSeed(beta: beta, latentSize: z, global: globalKL)
        for (i, piece) in pieces.enumerated() where !piece.indices.isEmpty {
            optimizer.beginStep(model)
            backward(i, forwards[i], seed: seed)
        }
        clock.lap(.forwardBackward)
        return (terms, globalKL)
    }

    // MARK: - Epoch-end duties

    /// Evaluation, pictures, checkpoint, replica check: at each epoch end and
    /// where training stops (once per step).
    func finishPoint() throws -> EvaluationResult? {
        guard lastFinishedStep != position.step else { return nil }
        lastFinishedStep = position.step
        let t0 = monotonicSeconds()
        let loaded = loadedModel
        watchdog?.set(phase: .evaluation)
        faults.stallIfDue(rank: rank, step: position.step, phase: .evaluation)
        let result = try evaluate()
        let improved = progress.record(testLoss: result.loss, ndcg: result.ranking?.model.ndcg100, step: position.step)
        try recorder.pictures(of: loaded, testSet: data.test, at: position)
        let best = improved && configuration.keepBest
        if lastCheckpointStep != position.step {
            try checkpoint(best: best)
        } else if configuration.keepBest || configuration.earlyStop != nil {
            // This step's checkpoint is written (--checkpoint-every): it records the progress too, and may be the best.
            try checkpoint(best: best)
        }
        if configuration.verifyReplicas { try recorder.verifyReplicas(model) }
        recorder.excludeFromThroughput(monotonicSeconds() - t0)
        try recorder.evaluation(result, at: position, progress: progress, best: best,
                                onTrainingSet: data.test.isTrainingSet)
        if let patience = configuration.earlyStop, progress.evaluationsWithoutImprovement >= patience {
            earlyStop = "early stop at step \(position.step): \(progress.criterion) has not improved for "
                + plural(patience, "evaluation") + " (best \(progress.bestSummary) "
                + "at step \(progress.bestStep ?? 0)" + (configuration.keepBest ? ", kept as checkpoints/best)" : ")")
            try recorder.earlyStop(earlyStop!, at: position, progress: progress)
        }
        // Rank 0 has written the evaluation's records, pictures and checkpoint
        // alone: the others wait for it here, outside the next step, so that
        // the wait is not counted as the next step's reduction.
        let t1 = monotonicSeconds()
        try communicator.barrier()
        recorder.excludeFromThroughput(monotonicSeconds() - t1)
        return result
    }

    var loadedModel: LoadedModel {
        LoadedModel(model, architecture: architecture, image: image, backend: backend.unprofiled)
    }

    public func evaluate() throws -> EvaluationResult {
        var result = try Inference.evaluate(loadedModel, images: data.test, seed: configuration.seed,
                                            batchSize: configuration.evaluationBatchSize, communicator: communicator,
                                            exact: configuration.reproducible)
        if configuration.data.heldoutUsers != nil {
            // The held-out users ranked as `vae-mpi recommend --evaluate` ranks them (same seed, same split).
            var popularity = data.shard.columnPopularity
            if !configuration.reproducible { try popularity.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) } }
            let ranked = try loadedModel.rankingMetrics(data.test, seed: configuration.seed, popularity: popularity,
                                                        communicator: communicator)
            if ranked.model.users > 0 { result.ranking = ranked }
        }
        return result
    }

    func checkpoint(best: Bool = false) throws {
        watchdog?.set(phase: .checkpoint)
        faults.stallIfDue(rank: rank, step: position.step, phase: .checkpoint)
        lastCheckpointStep = position.step
        try recorder.checkpoint(model: model, adam: try optimizer.gatheredState(), layout: layout, image: image,
                                position: position, stepsPerEpoch: stepsPerEpoch, progress: progress, best: best)
    }
}
