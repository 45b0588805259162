import _Differentiation
import Collectives
import Datasets
import TensorCore
import VAEModel

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    public var epochsCompleted: Int
    public var samplesSeen: Int
    public var finalEvaluation: EvaluationResult?
    public var timings: StepTimings
    public var trainingSeconds: Double
    public var runDirectory: String
}

/// The data-parallel training loop of DESIGN.md §6, and nothing else: every
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
    /// What resuming did, for rank 0 to print.
    public private(set) var resumeNote: String? = nil

    var rank: Int { communicator.rank }

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
                                        rank: communicator.rank, worldSize: communicator.size),
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
                                 classes: options.conditionalClasses)
        let termCount = ELBOTerms.reported.count
        if let checkpoint {
            let model = try communicator.collectively { try checkpoint.model(options) }
            let layout = model.parameterLayout
            var adam = try communicator.collectively { try checkpoint.adam(layout: layout) }
            adam.learningRate = Float(configuration.learningRate)
            self.model = model
            optimizer = DataParallelOptimizer(model: model, layout: layout, adam: adam, termCount: termCount,
                                              communicator: communicator, sharded: configuration.shardOptimizer,
                                              gradientPrecision: configuration.gradientPrecision)
        } else {
            // Rank 0 draws the initial parameters; everyone starts from its copy.
            var model = options.makeModel(for: image, seed: configuration.seed)
            let layout = model.parameterLayout
            var flat = model.flattened(layout: layout)
            try communicator.broadcast(&flat, root: 0)
            flat.withUnsafeBufferPointer { model.assign(from: $0, layout: layout) }
            self.model = model
            optimizer = DataParallelOptimizer(
                model: model, layout: layout,
                adam: Adam(parameterCount: layout.count, learningRate: Float(configuration.learningRate)),
                termCount: termCount, communicator: communicator, sharded: configuration.shardOptimizer,
                gradientPrecision: configuration.gradientPrecision)
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
        let sameBatches = s.worldSize == communicator.size && s.stepsPerEpoch == stepsPerEpoch
        if !sameBatches && s.stepInEpoch != 0 { position.startNextEpoch() }
        if position.stepInEpoch >= stepsPerEpoch { position.startNextEpoch() }
        var note = "resuming from \(checkpoint.path): step \(s.step), epoch \(s.epoch) (\(s.stepInEpoch) of \(s.stepsPerEpoch) steps done)"
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
                let report = try step(order: order)
                try recorder.stepFinished(report, at: position, totalSteps: totalSteps)
                if let every = configuration.checkpointEvery, position.step % every == 0 {
                    let t0 = monotonicSeconds()
                    try checkpoint()
                    recorder.excludeFromThroughput(monotonicSeconds() - t0)
                }
            }
            lastEvaluation = try finishPoint() ?? lastEvaluation
            position.startNextEpoch()
        }
        if position.step > 0 { lastEvaluation = try finishPoint() ?? lastEvaluation }
        recorder.console.clearLiveLine()
        return TrainingSummary(steps: position.step, epochsCompleted: position.epoch - 1,
                               samplesSeen: position.samplesSeen, finalEvaluation: lastEvaluation, timings: timings,
                               trainingSeconds: recorder.elapsed, runDirectory: configuration.runDirectory)
    }

    // MARK: - One step

    /// batch, noise; forward and backward; reduce; update.
    func step(order: [Int]) throws -> StepReport {
        var clock = PhaseClock()
        let kernelsBefore = backend.profiler?.seconds
        let x = data.batch(stepInEpoch: position.stepInEpoch, order: order)                 // (b, D)
        let condition = data.condition(stepInEpoch: position.stepInEpoch, order: order)     // (b, K)
        let count = x.shape[0]
        let noise = data.noise(count: count, latentSize: model.latentSize, step: position.step)  // (b, Z)
        try faults.failIfDue(rank: rank, step: position.step + 1)
        clock.lap(.data)

        let beta = configuration.kl.weight(atStep: position.step + 1)
        let (terms, gradient, globalKL) = try forwardBackward(x, condition: condition, noise: noise, beta: beta, clock: &clock)
        let reduced = try optimizer.step(&model, gradient: gradient, samples: count,
                                         terms: terms?.reportedValues ?? Array(repeating: 0, count: ELBOTerms.reported.count),
                                         step: position.step + 1, clock: &clock)

        position.finishStep(samples: Int(reduced.samples))
        faults.divergeIfDue(&model, rank: rank, step: position.step)
        if position.step > StepTimings.warmupSteps {
            let kernels = backend.profiler.map { p in
                (gemm: p.seconds.gemm - kernelsBefore!.gemm, layout: p.seconds.layout - kernelsBefore!.layout)
            } ?? (0, 0)
            timings.add(clock, kernels: kernels)
        }
        let sums = reduced.terms.map(Double.init)
        return StepReport(samples: Double(reduced.samples), terms: sums,
                          objective: configuration.kl.objective(reconstruction: sums[ELBOTerms.Term.reconstruction.rawValue],
                                                                kl: sums[ELBOTerms.Term.kl.rawValue], beta: beta,
                                                                global: globalKL),
                          beta: beta)
    }

    /// The local gradient sum of the negative ELBO (nil for an empty batch).
    /// With free bits, one small reduction between the forward and the
    /// backward pass gives every rank the global batch's KL per latent
    /// dimension, so the constraint max(KL_j, λ) applies to the global batch
    /// exactly as in Kingma et al. (2016).
    func forwardBackward(_ x: Tensor, condition: Tensor, noise: Tensor, beta: Double, clock: inout PhaseClock) throws
        -> (terms: ELBOTerms?, gradient: Model?, globalKL: (klPerDimension: [Float], count: Float)?)
    {
        let z = model.latentSize, count = x.shape[0]
        let likelihood = architecture.likelihood, backend = self.backend
        // The pullback holds on to the parameters (the linear ops' VJPs keep
        // their weights); it is gone when this function returns, before Adam
        // writes them in place (otherwise each write would copy its tensor).
        optimizer.beginStep(model)
        let forward = count > 0 ? valueWithPullback(at: model) { m in
            negativeELBO(m, x: x, condition: condition, noise: noise, likelihood: likelihood, on: backend)
        } : nil
        var globalKL: (klPerDimension: [Float], count: Float)? = nil
        if configuration.kl.needsGlobalKLPerDimension {
            clock.lap(.forwardBackward)
            var sums = (forward?.value.klPerDimension.scalars ?? [Float](repeating: 0, count: z)) + [Float(count)]
            try optimizer.reduce(&sums)
            globalKL = (Array(sums[0..<z]), sums[z])
            clock.lap(.reduction)
        }
        guard let (terms, pullback) = forward else {
            clock.lap(.forwardBackward)
            return (nil, nil, globalKL)
        }
        let seed = configuration.kl.klSeed(beta: beta, latentSize: z, global: globalKL)
        let gradient = pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: seed))
        clock.lap(.forwardBackward)
        return (terms, gradient, globalKL)
    }

    // MARK: - Epoch-end duties

    /// Evaluation, pictures, checkpoint, replica check: at each epoch end and
    /// where training stops (once per step).
    func finishPoint() throws -> EvaluationResult? {
        guard lastFinishedStep != position.step else { return nil }
        lastFinishedStep = position.step
        let t0 = monotonicSeconds()
        let loaded = loadedModel
        let result = try evaluate()
        try recorder.pictures(of: loaded, testSet: data.test, at: position)
        if lastCheckpointStep != position.step { try checkpoint() }
        if configuration.verifyReplicas { try recorder.verifyReplicas(model) }
        recorder.excludeFromThroughput(monotonicSeconds() - t0)
        try recorder.evaluation(result, at: position)
        return result
    }

    var loadedModel: LoadedModel {
        LoadedModel(model, architecture: architecture, image: image, backend: backend.unprofiled)
    }

    public func evaluate() throws -> EvaluationResult {
        try Inference.evaluate(loadedModel, images: data.test, seed: configuration.seed,
                               batchSize: configuration.evaluationBatchSize, communicator: communicator)
    }

    func checkpoint() throws {
        lastCheckpointStep = position.step
        try recorder.checkpoint(model: model, adam: try optimizer.gatheredState(), layout: layout, image: image,
                                position: position,
                                stepsPerEpoch: stepsPerEpoch)
    }
}
