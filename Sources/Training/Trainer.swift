import _Differentiation
import Artifacts
import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Seconds spent in each part of the training steps so far (this rank).
public struct StepTimings: Codable, Sendable {
    /// Building the batch and drawing the noise.
    public var data = 0.0
    /// valueWithPullback and the pullback.
    public var forwardBackward = 0.0
    /// Packing the gradient into the allreduce buffer, finiteness check.
    public var pack = 0.0
    public var allreduce = 0.0
    public var optimizer = 0.0
    /// Summed GEMM and im2col/col2im time inside forwardBackward (only when measured).
    public var gemm = 0.0
    public var im2col = 0.0
    /// Steps measured (after the warm-up).
    public var steps = 0
    /// Steps at the start of a run that are not measured.
    public static let warmupSteps = 10

    public var total: Double { data + forwardBackward + pack + allreduce + optimizer }
}

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

/// The data-parallel training loop (DESIGN.md §6). Every rank runs it with
/// its own shard; the communicator makes the gradients global. There is no
/// `if mpi` here: with one rank the communicator is the identity.
public final class Trainer<Model: TrainableModel> {
    let configuration: TrainingConfiguration
    let communicator: Communicator
    let console: Console
    let spec: ModelSpec
    let likelihood: Likelihood
    let plan: ShardPlan
    let trainShard: ImageSet
    let testSet: ImageSet
    /// The first test images, shown in reconstruction pictures (rank 0).
    let pictureInputs: Tensor
    /// Rank 0's outputs; nil on other ranks.
    let outputs: RunDirectory?
    let layout: ParameterLayout

    var model: Model
    var optimizer: Adam
    /// [gradient sums (P) | samples | reconstruction sum | KL sum | non-finite flag]
    var buffer: [Float]

    /// Steps completed in total, and the position in the current epoch.
    var globalStep = 0
    var epoch = 1
    var stepInEpoch = 0
    var samplesSeen = 0
    var timings = StepTimings()
    /// Time GEMMs and im2col/col2im inside the steps (--profile).
    public var measureKernels = false
    /// Test hook: this rank throws before the allreduce of this step, so the
    /// multi-rank tests can check that one rank's failure ends the whole job.
    public var injectedFailure: (rank: Int, step: Int)?
    /// Test hook: this rank nudges one parameter by 1e-3 after this step, a
    /// silent divergence that `--verify-replicas` must catch. (One ulp would
    /// not do: later updates much larger than an ulp can round it away.)
    public var injectedDivergence: (rank: Int, step: Int)?

    /// The step at which evaluation, pictures and checkpoint were last done
    /// (a resumed run starts at one).
    var lastFinishedStep: Int? = nil
    var lastCheckpointStep: Int? = nil
    /// What resuming did, for rank 0 to print.
    public private(set) var resumeNote: String? = nil

    var rank: Int { communicator.rank }

    /// Loads this rank's data, creates the run directory (rank 0), and
    /// initialises the model: on rank 0, broadcast to all, or from
    /// `checkpoint` (which every rank holds). Setup errors on any rank end
    /// every rank cleanly (see `Communicator.collectively`).
    public init(configuration: TrainingConfiguration, spec: ModelSpec, data: LoadedData,
                communicator: Communicator, console: Console, resumingFrom checkpoint: Checkpoint? = nil) throws {
        self.configuration = configuration
        self.communicator = communicator
        self.console = console
        self.spec = spec
        self.likelihood = spec.observationModel
        let rank = communicator.rank, size = communicator.size

        plan = ShardPlan(sampleCount: data.train.count, worldSize: size,
                         globalBatch: configuration.batchSize, seed: configuration.seed)
        trainShard = data.train.selecting(plan.shardIndices(rank: rank))
        testSet = data.test
        pictureInputs = data.test.batch(0..<min(8, data.test.count))

        let resumeStep = checkpoint?.sidecar.step
        outputs = try communicator.collectively {
            rank == 0 ? try RunDirectory(root: configuration.runDirectory, configuration: configuration,
                                         resumingAt: resumeStep) : nil
        }

        if let checkpoint {
            let model = try communicator.collectively { try checkpoint.model(as: Model.self) }
            layout = model.parameterLayout
            self.model = model
            let layout = self.layout
            optimizer = try communicator.collectively { try checkpoint.optimizer(layout: layout) }
            optimizer.learningRate = Float(configuration.learningRate)
        } else {
            // Rank 0 draws the initial parameters; everyone starts from its copy.
            var model = Model(spec: spec, seed: configuration.seed)
            let layout = model.parameterLayout
            self.layout = layout
            var flat = model.flattened(layout: layout)
            try communicator.broadcast(&flat, root: 0)
            flat.withUnsafeBufferPointer { model.assign(from: $0, layout: layout) }
            self.model = model
            optimizer = Adam(parameterCount: layout.count, learningRate: Float(configuration.learningRate))
        }
        buffer = [Float](repeating: 0, count: layout.count + 4)
        if let checkpoint { restorePosition(checkpoint.sidecar, path: checkpoint.path) }
    }

    /// Continues where the checkpoint stopped. With the world size (and so
    /// the batches) it was written with, exactly there: the random streams
    /// are keyed by position, so the rest of the run is bit-identical to an
    /// uninterrupted one. Otherwise from the next epoch boundary.
    func restorePosition(_ s: CheckpointSidecar, path: String) {
        globalStep = s.step
        samplesSeen = s.samplesSeen
        lastFinishedStep = s.step
        lastCheckpointStep = s.step
        let sameBatches = s.worldSize == communicator.size && s.stepsPerEpoch == plan.stepsPerEpoch
        if sameBatches || s.stepInEpoch == 0 {
            (epoch, stepInEpoch) = (s.epoch, s.stepInEpoch)
        } else {
            (epoch, stepInEpoch) = (s.epoch + 1, 0)
        }
        if stepInEpoch >= plan.stepsPerEpoch { (epoch, stepInEpoch) = (epoch + 1, 0) }
        var note = "resuming from \(path): step \(s.step), epoch \(s.epoch) (\(s.stepInEpoch) of \(s.stepsPerEpoch) steps done)"
        if !sameBatches {
            note += "; it was written by \(s.worldSize) rank\(s.worldSize == 1 ? "" : "s"), this run has \(communicator.size)"
            if s.stepInEpoch != 0 && s.stepInEpoch < s.stepsPerEpoch {
                note += ", so the data position moves to the start of epoch \(epoch) (the rest of epoch \(s.epoch) is skipped)"
            }
        }
        resumeNote = note
    }

    // MARK: - The loop

    public func run() throws -> TrainingSummary {
        let started = monotonicSeconds()
        var window = LogWindow(start: started)
        var lastLiveLine = started
        var lastEvaluation: EvaluationResult? = nil
        let stepsPerEpoch = plan.stepsPerEpoch
        let totalSteps = min(configuration.maxSteps ?? Int.max, stepsPerEpoch * configuration.epochs)

        func finishPoint() throws {
            // Evaluation, pictures, checkpoint, replica check: at each epoch
            // end and where training stops.
            guard lastFinishedStep != globalStep else { return }
            lastFinishedStep = globalStep
            let t0 = monotonicSeconds()
            let result = try evaluate()
            lastEvaluation = result
            try writePictures()
            if lastCheckpointStep != globalStep { try saveCheckpoint() }
            if configuration.verifyReplicas { try verifyReplicas() }
            window.exclude(monotonicSeconds() - t0)
            try report(result, elapsed: monotonicSeconds() - started)
        }

        training: while epoch <= configuration.epochs {
            let order = plan.epochOrder(epoch: epoch, rank: rank)
            while stepInEpoch < stepsPerEpoch {
                if globalStep >= totalSteps { break training }
                let stats = try step(order: order)
                window.add(stats)
                if globalStep % configuration.logEvery == 0 || globalStep == totalSteps {
                    try logProgress(&window, totalSteps: totalSteps, elapsed: monotonicSeconds() - started)
                } else if console.isTerminal && monotonicSeconds() - lastLiveLine > 0.25 {
                    // On a terminal the live line moves between log steps too.
                    console.progress(progressLine(window, totalSteps: totalSteps))
                    lastLiveLine = monotonicSeconds()
                }
                if let every = configuration.checkpointEvery, globalStep % every == 0 {
                    let t0 = monotonicSeconds()
                    try saveCheckpoint()
                    window.exclude(monotonicSeconds() - t0)
                }
            }
            try finishPoint()
            epoch += 1
            stepInEpoch = 0
        }
        if globalStep > 0 { try finishPoint() }
        console.clearLiveLine()
        return TrainingSummary(steps: globalStep, epochsCompleted: epoch - 1, samplesSeen: samplesSeen,
                               finalEvaluation: lastEvaluation, timings: timings,
                               trainingSeconds: monotonicSeconds() - started,
                               runDirectory: configuration.runDirectory)
    }

    // MARK: - One step

    struct StepStats {
        var samples: Double
        var reconstruction: Double
        var kl: Double
        /// What the step minimised, summed: reconstruction + β_t·KL, with
        /// free bits Σ_j max(KL_j, λ·samples) in place of KL.
        var objective: Double
        var beta: Double
    }

    /// β at a step (1-based): a linear ramp from 0 over `klWarmupSteps`.
    func klWeight(step: Int) -> Double {
        let warmup = configuration.klWarmupSteps
        return warmup > 0 ? configuration.beta * min(1, Double(step) / Double(warmup)) : configuration.beta
    }

    /// One synchronized step: local gradient sums → one allreduce → Adam.
    /// With free bits, one more (small) allreduce between the forward and
    /// the backward pass gives every rank the global batch's KL per latent
    /// dimension, so the constraint max(KL_j, λ) applies to the global batch
    /// exactly as in Kingma et al. (2016).
    func step(order: [Int]) throws -> StepStats {
        let t0 = monotonicSeconds()
        let positions = plan.localRange(step: stepInEpoch, rank: rank)
        let x = trainShard.batch(positions.map { order[$0] })
        let count = positions.count
        let z = model.latentSize
        let noise = Tensor(normalsFrom: RandomStream(seed: configuration.seed, domain: .trainingNoise,
                                                     UInt32(rank), UInt32(truncatingIfNeeded: globalStep)),
                           shape: [count, z])
        if let f = injectedFailure, f.rank == rank, f.step == globalStep + 1 {
            throw TrainingError.injectedFailure(step: f.step)
        }
        let t1 = monotonicSeconds()
        let p = layout.count
        let kernelTimer = measureKernels && count > 0 ? KernelTimer() : nil
        KernelTimer.current = kernelTimer
        let likelihood = self.likelihood
        // The pullback holds on to the parameters (the linear ops' VJPs keep
        // their weights); it must be gone before Adam writes them in place,
        // or each write would copy its tensor first.
        var forward = count > 0 ? valueWithPullback(at: model) { m in
            negativeELBO(m, x: x, noise: noise, likelihood: likelihood)
        } : nil

        let beta = klWeight(step: globalStep + 1)
        var klSeed = Tensor(repeating: Float(beta), shape: [z])
        var freeBitsSums: [Float] = []
        var tFreeBits = 0.0
        if configuration.freeBits > 0 {
            KernelTimer.current = nil
            let tf = monotonicSeconds()
            freeBitsSums = (forward?.value.klPerDimension.scalars ?? [Float](repeating: 0, count: z)) + [Float(count)]
            try communicator.allreduceSum(&freeBitsSums)
            tFreeBits = monotonicSeconds() - tf
            KernelTimer.current = kernelTimer
            let threshold = Float(configuration.freeBits) * freeBitsSums[z]
            klSeed = Tensor(shape: [z], scalars: (0..<z).map { freeBitsSums[$0] > threshold ? Float(beta) : 0 })
        }
        var (tForwardBackward, tPack) = (0.0, 0.0)
        if let (terms, pullback) = forward {
            let gradient = pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: klSeed))
            forward = nil
            KernelTimer.current = nil
            let t2 = monotonicSeconds()
            buffer.withUnsafeMutableBufferPointer { b in
                let finite = gradient.flatten(into: b, layout: layout)
                let kl = terms.kl
                b[p] = Float(count)
                b[p + 1] = terms.reconstruction
                b[p + 2] = kl
                b[p + 3] = (finite && (terms.reconstruction + kl).isFinite) ? 0 : 1
            }
            (tForwardBackward, tPack) = (t2 - t1 - tFreeBits, monotonicSeconds() - t2)
        } else {
            KernelTimer.current = nil
            buffer.withUnsafeMutableBufferPointer { $0.initialize(repeating: 0) }
        }
        let t3 = monotonicSeconds()
        try communicator.allreduceSum(&buffer)
        let t4 = monotonicSeconds()

        let total = buffer[p]
        globalStep += 1
        stepInEpoch += 1
        if buffer[p + 3] != 0 {
            // Every rank sees the same flag after the allreduce and stops here.
            throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: globalStep, what: "loss or gradient"),
                                              rank: rank)
        }
        buffer.withUnsafeBufferPointer { b in
            optimizer.update(&model, gradient: UnsafeBufferPointer(rebasing: b[0..<p]),
                             gradientScale: 1 / total, layout: layout)
        }
        let t5 = monotonicSeconds()
        if let d = injectedDivergence, d.rank == rank, d.step == globalStep {
            var nudged = false
            model.walkParameters { _, tensor in
                if !nudged && tensor.count > 0 { tensor.scalars[0] += 1e-3; nudged = true }
            }
        }
        samplesSeen += Int(total)
        // The first steps (allocations, cold caches) are left out of the profile.
        if globalStep > StepTimings.warmupSteps {
            timings.data += t1 - t0
            timings.forwardBackward += tForwardBackward
            timings.pack += tPack
            timings.allreduce += t4 - t3 + tFreeBits
            timings.optimizer += t5 - t4
            timings.gemm += Double(kernelTimer?.gemmNanoseconds ?? 0) * 1e-9
            timings.im2col += Double(kernelTimer?.im2colNanoseconds ?? 0) * 1e-9
            timings.steps += 1
        }
        let (reconstruction, kl) = (Double(buffer[p + 1]), Double(buffer[p + 2]))
        var klTerm = kl
        if !freeBitsSums.isEmpty {
            let floor = configuration.freeBits * Double(freeBitsSums[z])
            klTerm = (0..<z).reduce(0.0) { $0 + max(Double(freeBitsSums[$1]), floor) }
        }
        return StepStats(samples: Double(total), reconstruction: reconstruction, kl: kl,
                         objective: reconstruction + beta * klTerm, beta: beta)
    }

    // MARK: - Rank 0's reporting

    struct LogWindow {
        var start: Double
        var excluded = 0.0
        var steps = 0
        var samples = 0.0
        var reconstruction = 0.0
        var kl = 0.0
        var objective = 0.0
        var beta = 0.0

        /// Training seconds in the window (evaluation and checkpoints excluded).
        var seconds: Double { max(monotonicSeconds() - start - excluded, 1e-9) }

        mutating func add(_ s: StepStats) {
            steps += 1
            samples += s.samples
            reconstruction += s.reconstruction
            kl += s.kl
            objective += s.objective
            beta = s.beta
        }

        mutating func exclude(_ seconds: Double) { excluded += seconds }
    }

    func logProgress(_ window: inout LogWindow, totalSteps: Int, elapsed: Double) throws {
        let n = max(window.samples, 1)
        let record = TrainRecord(
            step: globalStep, epoch: epoch, loss: window.objective / n,
            reconstruction: window.reconstruction / n, kl: window.kl / n, beta: window.beta,
            samplesPerS: window.samples / window.seconds, learningRate: configuration.learningRate,
            elapsedS: elapsed)
        if let outputs {
            try outputs.log(record)
            try outputs.tensorboard.scalars(
                [("train/loss", record.loss), ("train/reconstruction", record.reconstruction),
                 ("train/kl", record.kl), ("train/beta", record.beta), ("train/learning_rate", record.learningRate),
                 ("train/samples_per_s", record.samplesPerS)],
                step: globalStep, wallTime: Date().timeIntervalSince1970)
        }
        console.progress(progressLine(window, totalSteps: totalSteps))
        window = LogWindow(start: monotonicSeconds())
    }

    /// "epoch 3/10  step 1200/4690  loss 250.12  (rec 234.6, KL 15.5)  28000 samples/s  ETA 12s"
    func progressLine(_ window: LogWindow, totalSteps: Int) -> String {
        let n = max(window.samples, 1)
        let loss = window.objective / n
        let secondsPerStep = window.seconds / Double(max(window.steps, 1))
        let eta = Double(totalSteps - globalStep) * secondsPerStep
        return "epoch \(epoch)/\(configuration.epochs)  step \(globalStep)/\(totalSteps)  "
            + "loss \(String(format: "%.2f", loss))  "
            + "(rec \(String(format: "%.2f", window.reconstruction / n)), KL \(String(format: "%.2f", window.kl / n)))  "
            + "\(String(format: "%.0f", window.samples / window.seconds)) samples/s  ETA \(formatDuration(eta))"
    }

    func report(_ result: EvaluationResult, elapsed: Double) throws {
        if let outputs {
            try outputs.log(EvalRecord(step: globalStep, epoch: epoch, testLoss: result.loss,
                                       testReconstruction: result.reconstruction, testKl: result.kl,
                                       testBitsPerDim: result.bitsPerDimension, testSamples: result.samples,
                                       testKlPerDim: result.klPerDimension, activeUnits: result.activeUnits,
                                       elapsedS: elapsed))
            try outputs.tensorboard.scalars(
                [("test/loss", result.loss), ("test/reconstruction", result.reconstruction),
                 ("test/kl", result.kl), ("test/bits_per_dim", result.bitsPerDimension),
                 ("test/active_units", Double(result.activeUnits))]
                    + result.klPerDimension.enumerated().map { ("test/kl_dim_\($0.offset)", $0.element) },
                step: globalStep, wallTime: Date().timeIntervalSince1970)
        }
        console.print(
            "epoch \(epoch) step \(globalStep): test loss \(String(format: "%.3f", result.loss)) nats/sample "
            + "(reconstruction \(String(format: "%.3f", result.reconstruction)), KL \(String(format: "%.3f", result.kl))), "
            + "\(String(format: "%.4f", result.bitsPerDimension)) bits/dim over \(result.samples) test images, "
            + "\(result.activeUnits) active units")
    }

    // MARK: - Epoch-end duties

    public func evaluate() throws -> EvaluationResult {
        try Inference.evaluate(LoadedModel(model, spec: spec), images: testSet, seed: configuration.seed,
                               batchSize: configuration.evaluationBatchSize, communicator: communicator)
    }

    /// Rank 0: samples from the prior (the same 64 latent points every epoch,
    /// so the pictures show the model changing) and reconstructions, as PNG
    /// files and TensorBoard images.
    func writePictures() throws {
        guard let outputs else { return }
        let image = spec.image
        let z = Tensor(normalsFrom: RandomStream(seed: configuration.seed, domain: .sampling),
                       shape: [64, model.latentSize])
        let samples = likelihood.mean(model.decode(z))
        let n = pictureInputs.shape[0]
        let reconstructed = likelihood.mean(model.decode(model.encode(pictureInputs).mean))
        let pictures: [(String, Raster)] = [
            ("samples", ImageGrid.raster(images: samples.scalars, count: 64, channels: image.channels,
                                         height: image.height, width: image.width, columns: 8)),
            ("reconstructions", ImageGrid.raster(images: pictureInputs.scalars + reconstructed.scalars, count: 2 * n,
                                                 channels: image.channels, height: image.height,
                                                 width: image.width, columns: n)),
        ]
        var all = pictures
        if model.latentSize == 2 {
            let loaded = LoadedModel(model, spec: spec)
            let means = try Inference.encodeMeans(loaded, images: testSet, batchSize: configuration.evaluationBatchSize,
                                                  communicator: LocalCommunicator())
            all.append(("latent-manifold", Inference.manifold(loaded)))
            all.append(("latent-scatter", Inference.scatter(
                means: means, labels: testSet.labels, labelNames: Inference.labelNames(forData: configuration.data),
                title: "posterior means of \(testSet.count) test images, epoch \(epoch), step \(globalStep)")))
        }
        for (kind, raster) in all {
            let png = try raster.pngData()
            try Files.writeAtomically(png, to: outputs.picturePath(kind, epoch: epoch))
            try outputs.tensorboard.image(kind, png: png, width: raster.width, height: raster.height,
                                          channels: raster.channels, step: globalStep,
                                          wallTime: Date().timeIntervalSince1970)
        }
    }

    /// Compares a hash of every rank's parameters; all ranks learn the result.
    func verifyReplicas() throws {
        let hashes = try communicator.allGather(parameterHash())
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        if !differing.isEmpty {
            throw CollectiveFailure.unanimous(TrainingError.replicasDiverged(ranks: differing, hashes: hashes),
                                              rank: rank)
        }
        console.print("replicas identical on \(hashes.count) rank\(hashes.count == 1 ? "" : "s") "
                      + "(parameter hash \(String(hashes[0], radix: 16)))")
    }

    /// FNV-1a over the bit patterns of all parameters, in walk order.
    func parameterHash() -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for (_, tensor) in model.namedParameters {
            tensor.scalars.withUnsafeBufferPointer { values in
                for v in values {
                    hash = (hash ^ UInt64(v.bitPattern)) &* 0x0000_0100_0000_01B3
                }
            }
        }
        return hash
    }

    /// Rank 0 writes parameters (PyTorch names), Adam moments (under
    /// `optimizer.`) and the sidecar; every rank's state is identical.
    func saveCheckpoint() throws {
        lastCheckpointStep = globalStep
        guard let outputs else { return }
        let contents = CheckpointContents(model: model, optimizer: optimizer, layout: layout)
        let sidecar = CheckpointSidecar(
            tensorsFile: CheckpointStore.stem(step: globalStep) + ".safetensors",
            step: globalStep, epoch: epoch, stepInEpoch: stepInEpoch, stepsPerEpoch: plan.stepsPerEpoch,
            worldSize: communicator.size, samplesSeen: samplesSeen,
            optimizer: .init(adam: optimizer), seed: configuration.seed,
            configuration: configuration, model: spec, checksums: contents.checksums)
        try outputs.checkpoints.write(step: globalStep, tensors: contents.file(metadata: ["format": "vae-mpi"]),
                                      sidecar: try JSONText.pretty(sidecar), keep: configuration.keepCheckpoints)
    }
}
