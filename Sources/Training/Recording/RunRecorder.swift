import Artifacts
import Collectives
import Datasets
import Foundation
import Imaging
import TensorCore
import VAEModel

/// What a training step reports to the recorder: sums over the global batch.
struct StepReport {
    var samples: Double
    /// `ELBOTerms.reported`, in order.
    var terms: [Double]
    /// What the step minimised: reconstruction + β·KL, with free bits applied.
    var objective: Double
    var beta: Double
    /// The step's learning rate (see `LearningRateSchedule`).
    var learningRate: Double
}

/// Rank 0's duties (docs/ARCHITECTURE.md, "The run directory"), in one place: metrics.jsonl, TensorBoard,
/// the progress line, pictures, checkpoints; and the replica check, which
/// every rank takes part in. On other ranks it writes nothing.
final class RunRecorder {
    let configuration: TrainingConfiguration
    let communicator: Communicator
    let console: Console
    /// Rank 0's run directory; nil on the other ranks.
    let outputs: RunDirectory?
    let classNames: [String]
    let started = monotonicSeconds()
    private var window: LogWindow
    /// Rank 0: what curves.png shows.
    private var curves = TrainingCurves()

    /// Creates the run directory (rank 0), or reopens it `resumingAt` a step;
    /// every rank learns whether that worked.
    init(configuration: TrainingConfiguration, communicator: Communicator, console: Console,
         classNames: [String]?, resumingAt resumeStep: Int?) throws {
        self.configuration = configuration
        self.communicator = communicator
        self.console = console
        self.classNames = classNames ?? []
        let rank = communicator.rank
        outputs = try communicator.collectively {
            rank == 0 ? try RunDirectory(root: configuration.runDirectory, configuration: configuration,
                                         resumingAt: resumeStep) : nil
        }
        window = LogWindow(start: started)
        if let outputs, resumeStep != nil { curves = TrainingCurves(metricsPath: outputs.root + "/metrics.jsonl") }
        if let outputs, outputs.reusedAbandonedRun {
            console.print("\(outputs.root) held a run that stopped before its first checkpoint: starting it over there")
        }
    }

    var elapsed: Double { monotonicSeconds() - started }

    // MARK: - Progress

    /// Counts a step; logs at every `logEvery` steps and at the last one,
    /// and on a terminal moves the live line in between.
    func stepFinished(_ report: StepReport, at position: TrainingPosition, totalSteps: Int) throws {
        window.add(report)
        if position.step % configuration.logEvery == 0 || position.step == totalSteps {
            try logTraining(at: position, totalSteps: totalSteps)
        } else if console.isTerminal && monotonicSeconds() - window.lastLiveLine > 0.25 {
            console.progress(progressLine(at: position, totalSteps: totalSteps))
            window.lastLiveLine = monotonicSeconds()
        }
    }

    /// Time spent on evaluation, pictures and checkpoints does not count
    /// towards the training throughput.
    func excludeFromThroughput(_ seconds: Double) { window.excluded += seconds }

    private func logTraining(at position: TrainingPosition, totalSteps: Int) throws {
        let n = max(window.samples, 1)
        var record = MetricsRecord(type: "train")
        record.add("step", position.step)
        record.add("epoch", position.epoch)
        record.add("loss", window.objective / n)
        for (name, sum) in zip(ELBOTerms.reported, window.terms) { record.add(name.key, sum / n) }
        record.add("beta", window.beta)
        record.add("samples_per_s", window.samples / window.seconds)
        record.add("learning_rate", window.learningRate)
        record.add("elapsed_s", elapsed)
        if outputs != nil {
            curves.train.append(.init(step: Double(position.step), reconstruction: record.number("reconstruction") ?? .nan,
                                      kl: record.number("kl") ?? .nan, learningRate: window.learningRate))
        }
        let scalars = ["loss"] + ELBOTerms.reported.map(\.key) + ["beta", "learning_rate", "samples_per_s"]
        try write(record, scalars: scalars.map { ($0, "train/" + $0) }, step: position.step)
        console.progress(progressLine(at: position, totalSteps: totalSteps))
        window = LogWindow(start: monotonicSeconds())
    }

    /// "epoch 3/10  step 1200/4690  loss 250.12  (rec 234.60, KL 15.50)  28000 samples/s  ETA 12s"
    private func progressLine(at position: TrainingPosition, totalSteps: Int) -> String {
        let n = max(window.samples, 1)
        let secondsPerStep = window.seconds / Double(max(window.steps, 1))
        let eta = Double(totalSteps - position.step) * secondsPerStep
        let terms = zip(ELBOTerms.reported, window.terms).map { "\($0.label) \(String(format: "%.2f", $1 / n))" }
        return "epoch \(position.epoch)/\(configuration.epochs)  step \(position.step)/\(totalSteps)  "
            + "loss \(String(format: "%.2f", window.objective / n))  (\(terms.joined(separator: ", ")))  "
            + "\(String(format: "%.0f", window.samples / window.seconds)) samples/s  ETA \(formatDuration(eta))"
    }

    /// One metrics line, and the fields named by `scalars` (metrics key,
    /// TensorBoard tag) as TensorBoard scalars.
    private func write(_ record: MetricsRecord, scalars: [(key: String, tag: String)],
                       extraScalars: [(tag: String, value: Double)] = [], step: Int) throws {
        guard let outputs else { return }
        try outputs.log(record)
        let tags = scalars.compactMap { s in record.number(s.key).map { (tag: s.tag, value: $0) } } + extraScalars
        try outputs.tensorboard.scalars(tags, step: step, wallTime: Date().timeIntervalSince1970)
    }

    /// Rank 0: one metrics line listing the images skipped as unreadable
    /// (`--skip-bad-images`): "path: what failed" each.
    func skippedImages(_ bad: [BadImage], step: Int) throws {
        guard let outputs, !bad.isEmpty else { return }
        var record = MetricsRecord(type: "skipped_images")
        record.add("step", step)
        record.add("count", bad.count)
        record.add("images", .strings(bad.map { "\($0.path): \($0.reason)" }))
        try outputs.log(record)
    }

    // MARK: - Evaluation

    func evaluation(_ result: EvaluationResult, at position: TrainingPosition,
                    progress: EvaluationProgress = EvaluationProgress(), best: Bool = false,
                    onTrainingSet: Bool = false) throws {
        var record = MetricsRecord(type: "eval")
        record.add("step", position.step)
        record.add("epoch", position.epoch)
        // Without a test set the "test" keys hold the training set's values, and the record says so.
        if onTrainingSet { record.add("evaluated_on", .string("training set")) }
        // With validation users (`--validation-users`) the "test" keys hold theirs, and the record says so.
        let onValidation = !onTrainingSet && configuration.data.validationUsers != nil
        if onValidation { record.add("evaluated_on", .string("validation users")) }
        record.add("test_loss", result.loss)
        for (name, value) in zip(ELBOTerms.reported, result.terms) { record.add("test_" + name.key, value) }
        // Bits per dimension only where they are a code length (see `EvaluationResult.bitsPerDimension`).
        if let bits = result.bitsPerDimension { record.add("test_bits_per_dim", bits) }
        if let (model, popular) = result.ranking {
            record.add("test_ndcg_at_100", model.ndcg100)
            record.add("test_recall_at_20", model.recall20)
            record.add("test_recall_at_50", model.recall50)
            record.add("popularity_ndcg_at_100", popular.ndcg100)
            record.add("popularity_recall_at_20", popular.recall20)
            record.add("popularity_recall_at_50", popular.recall50)
            record.add("ranked_users", model.users)
        }
        record.add("test_samples", result.samples)
        record.add("test_kl_per_dim", .doubles(result.klPerDimension))
        record.add("active_units", result.activeUnits)
        if configuration.keepBest || configuration.earlyStop != nil {
            record.add("best_test_loss", progress.bestTestLoss ?? result.loss)
            if let ndcg = progress.bestNDCG { record.add("best_ndcg_at_100", ndcg) }
            record.add("best_step", progress.bestStep ?? position.step)
            record.add("evaluations_without_improvement", progress.evaluationsWithoutImprovement)
        }
        record.add("elapsed_s", elapsed)
        // TensorBoard: test/loss, test/<term>, test/bits_per_dim, test/active_units, test/kl_dim_j.
        let scalars = ["test_loss"] + ELBOTerms.reported.map { "test_" + $0.key } + ["test_bits_per_dim", "active_units"]
            + (result.ranking == nil ? [] : ["test_ndcg_at_100", "test_recall_at_20", "test_recall_at_50"])
        try write(record, scalars: scalars.map { ($0, "test/" + ($0.hasPrefix("test_") ? String($0.dropFirst(5)) : $0)) },
                  extraScalars: result.klPerDimension.enumerated().map { ("test/kl_dim_\($0.offset)", $0.element) },
                  step: position.step)
        if let outputs {
            curves.test.append(.init(step: Double(position.step), reconstruction: record.number("test_reconstruction") ?? .nan,
                                     kl: record.number("test_kl") ?? .nan,
                                     ndcg: result.ranking?.model.ndcg100 ?? .nan,
                                     recall20: result.ranking?.model.recall20 ?? .nan,
                                     popularityNDCG: result.ranking?.popularity.ndcg100 ?? .nan,
                                     popularityRecall20: result.ranking?.popularity.recall20 ?? .nan))
            let name = (outputs.root as NSString).lastPathComponent
            let png = try curves.render(title: "\(name): epoch \(position.epoch), step \(position.step)").pngData()
            try Files.writeAtomically(png, to: outputs.root + "/curves.png")
        }
        let terms = zip(ELBOTerms.reported, result.terms)
            .map { "\($0.name) \(String(format: "%.3f", $1))" }
        console.print(
            "epoch \(position.epoch) step \(position.step): \(onTrainingSet ? "training-set" : onValidation ? "validation" : "test") loss \(String(format: "%.3f", result.loss)) nats/sample "
            + "(\(terms.joined(separator: ", "))), "
            + (result.bitsPerDimension.map { String(format: "%.4f bits/dim, ", $0) } ?? "")
            + (onTrainingSet ? "over the \(result.samples) training samples (no test set), "
                : "over \(result.samples) \(onValidation ? "validation" : "test") samples, ")
            + "\(result.activeUnits) active units"
            + (result.ranking.map { ranked in
                String(format: "; \(onValidation ? "validation" : "held-out") users NDCG@100 %.4f, Recall@20 %.4f, Recall@50 %.4f (popularity %.4f, %.4f, %.4f)",
                       ranked.model.ndcg100, ranked.model.recall20, ranked.model.recall50,
                       ranked.popularity.ndcg100, ranked.popularity.recall20, ranked.popularity.recall50)
            } ?? ""))
    }

    // MARK: - Pictures

    /// Rank 0: samples from the prior (the same 64 latent points every epoch,
    /// so the pictures show the model changing) and reconstructions of the
    /// first test images, as PNG files and TensorBoard images; with a 2-D
    /// latent space also its manifold and the test set's posterior means.
    func pictures(of model: LoadedModel, testSet: ImageSet, at position: TrainingPosition) throws {
        guard let outputs else { return }
        // Vectors (rows of a table) are no pictures: only the latent scatter of a 2-D latent space.
        if !testSet.isImages {
            guard model.latentSize == 2 else { return }
            let means = try Inference.encodeMeans(model, images: testSet, batchSize: configuration.evaluationBatchSize,
                                                  communicator: LocalCommunicator())
            let raster = Inference.scatter(
                means: means, labels: testSet.labels, labelNames: classNames,
                title: "posterior means of \(testSet.count) test samples, epoch \(position.epoch), step \(position.step)")
            let png = try raster.pngData()
            try Files.writeAtomically(png, to: outputs.picturePath("latent-scatter", epoch: position.epoch))
            try outputs.tensorboard.image("latent-scatter", png: png, width: raster.width, height: raster.height,
                                          channels: raster.channels, step: position.step, wallTime: Date().timeIntervalSince1970)
            return
        }
        let image = model.image
        let z = Tensor(normalsFrom: RandomStream(seed: configuration.seed, domain: .sampling),
                       shape: [64, model.latentSize])
        let shown = 0..<min(8, testSet.count)
        let inputs = testSet.batch(shown)
        // A conditional model: one row per class, column j decoding the same z_j in every row.
        let samples = model.isConditional
            ? model.decodeMean(Tensor(shape: [8 * model.classes, model.latentSize],
                                      scalars: Array(repeatElement(z.scalars[0..<(8 * model.latentSize)], count: model.classes).joined())),
                               condition: model.condition(labels: (0..<model.classes).flatMap { [Int32](repeating: Int32($0), count: 8) },
                                                          count: 8 * model.classes))
            : model.decodeMean(z)
        var pictures: [(String, Raster)] = [
            ("samples", Inference.grid(samples, image: image, columns: 8)),
            ("reconstructions", Inference.reconstructionGrid(
                inputs: inputs, reconstructions: Inference.reconstructions(model, of: inputs,
                                                                           condition: model.condition(of: testSet, shown)),
                image: image, columns: inputs.shape[0])),
        ]
        if model.latentSize == 2 {
            let means = try Inference.encodeMeans(model, images: testSet, batchSize: configuration.evaluationBatchSize,
                                                  communicator: LocalCommunicator())
            pictures.append(("latent-manifold", Inference.manifold(model, label: model.isConditional ? 0 : nil)))
            pictures.append(("latent-scatter", Inference.scatter(
                means: means, labels: testSet.labels, labelNames: classNames,
                title: "posterior means of \(testSet.count) test images, epoch \(position.epoch), step \(position.step)")))
        }
        for (kind, raster) in pictures {
            let png = try raster.pngData()
            try Files.writeAtomically(png, to: outputs.picturePath(kind, epoch: position.epoch))
            try outputs.tensorboard.image(kind, png: png, width: raster.width, height: raster.height,
                                          channels: raster.channels, step: position.step,
                                          wallTime: Date().timeIntervalSince1970)
        }
    }

    // MARK: - Checkpoints and replicas

    /// Rank 0 writes parameters (PyTorch names), Adam moments (under
    /// `optimizer.`) and the sidecar; every rank's state is identical.
    func checkpoint<Model: ParameterWalking>(model: Model, adam: Adam, layout: ParameterLayout, image: ImageShape,
                                             position: TrainingPosition, stepsPerEpoch: Int,
                                             progress: EvaluationProgress, best: Bool) throws {
        guard let outputs else { return }
        let contents = CheckpointContents(model: model, optimizer: adam, layout: layout)
        let sidecar = CheckpointSidecar(
            tensorsFile: CheckpointStore.stem(step: position.step) + ".safetensors", position: position,
            stepsPerEpoch: stepsPerEpoch, worldSize: communicator.size, adam: adam,
            configuration: configuration, image: image, checksums: contents.checksums,
            progress: progress.bestStep == nil ? nil : progress)
        try outputs.checkpoints.write(step: position.step, tensors: contents.file(metadata: ["format": "vae-mpi"]),
                                      sidecar: try sidecar.encodedWithChecksum(), keep: configuration.keepCheckpoints,
                                      best: best)
    }

    /// Rank 0 says why the run stopped early, and records it in metrics.jsonl.
    func earlyStop(_ reason: String, at position: TrainingPosition, progress: EvaluationProgress) throws {
        guard let outputs else { return }
        var record = MetricsRecord(type: "early_stop")
        record.add("step", position.step)
        record.add("epoch", position.epoch)
        record.add("best_step", progress.bestStep ?? 0)
        record.add("best_test_loss", progress.bestTestLoss ?? .nan)
        if let ndcg = progress.bestNDCG { record.add("best_ndcg_at_100", ndcg) }
        record.add("evaluations_without_improvement", progress.evaluationsWithoutImprovement)
        try outputs.log(record)
        console.print(reason)
    }

    /// Compares a hash of every rank's parameters; all ranks learn the result.
    func verifyReplicas<Model: ParameterWalking>(_ model: Model) throws {
        let hashes = try communicator.allGather(parameterHash(model))
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        if !differing.isEmpty {
            throw CollectiveFailure.unanimous(TrainingError.replicasDiverged(ranks: differing, hashes: hashes),
                                              rank: communicator.rank)
        }
        console.print("replicas identical on \(plural(hashes.count, "rank")) "
                      + "(parameter hash \(String(hashes[0], radix: 16)))")
    }

    /// FNV-1a over the bit patterns of all parameters, in walk order.
    func parameterHash<Model: ParameterWalking>(_ model: Model) -> UInt64 {
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
}

/// The steps since the last metrics line.
private struct LogWindow {
    var start: Double
    var excluded = 0.0
    var lastLiveLine = 0.0
    var steps = 0
    var samples = 0.0
    var terms = [Double](repeating: 0, count: ELBOTerms.reported.count)
    var objective = 0.0
    var beta = 0.0
    var learningRate = 0.0

    init(start: Double) {
        self.start = start
        lastLiveLine = start
    }

    /// Training seconds in the window (evaluation and checkpoints excluded).
    var seconds: Double { max(monotonicSeconds() - start - excluded, 1e-9) }

    mutating func add(_ s: StepReport) {
        steps += 1
        samples += s.samples
        for i in terms.indices { terms[i] += s.terms[i] }
        objective += s.objective
        beta = s.beta
        learningRate = s.learningRate
    }
}

/// "1 step", "2 steps".
public func plural(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}
