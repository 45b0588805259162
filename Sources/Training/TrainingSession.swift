import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Everything `vae-mpi train` does on each rank: settle the configuration
/// (defaults or a checkpoint's, with the command line's overrides), load
/// data, build the trainer, run it, and report.
public struct TrainingSession {
    public let overrides: [ConfigurationOverride]
    /// A checkpoint to continue from (anything `CheckpointStore.resolve` accepts).
    public let resume: String?
    public let communicator: Communicator
    public let console: Console
    /// Print a per-step time breakdown (with GEMM time) at the end.
    public var profile: Bool

    public init(overrides: [ConfigurationOverride] = [], resume: String? = nil, communicator: Communicator,
                profile: Bool = false) {
        self.overrides = overrides
        self.resume = resume
        self.communicator = communicator
        self.console = Console(rank: communicator.rank)
        self.profile = profile
    }

    @discardableResult
    public func run() throws -> TrainingSummary {
        let (rank, size) = (communicator.rank, communicator.size)
        BLAS.flushSubnormalsToZero()
        var configuration: TrainingConfiguration
        var checkpoint: Checkpoint? = nil
        if let resume {
            let loaded = try Checkpoint.load(resume, communicator: communicator)
            var base = loaded.sidecar.configuration
            base.maxSteps = nil  // the stop of the interrupted run is not this run's
            base.runDirectory = loaded.runDirectory
            configuration = base.applying(overrides)
            for (option, differs) in TrainingConfiguration.fixedOnResume where differs(base, configuration) {
                throw CollectiveFailure.unanimous(
                    TrainingError.invalidOption(
                        option: option,
                        detail: "cannot change when resuming: it fixes the model, the batches or the random streams "
                            + "of the run in \(loaded.path)"),
                    rank: rank)
            }
            checkpoint = loaded
        } else {
            configuration = TrainingConfiguration().applying(overrides)
            // The conv model's default latent size is 16 (DESIGN.md §4).
            if configuration.model == .conv && !overrides.contains(where: { $0.option == "--latent-dim" }) {
                configuration.latentSize = 16
            }
        }
        BLAS.setThreads(configuration.threads)

        guard configuration.batchSize >= size else {
            throw CollectiveFailure.unanimous(
                TrainingError.invalidOption(
                    option: "--batch-size",
                    detail: "the global batch (\(configuration.batchSize)) must be at least the number of ranks (\(size))"),
                rank: rank)
        }
        // One run directory for all ranks: rank 0 names it.
        if configuration.runDirectory.isEmpty {
            let name = try communicator.broadcast(bytes: rank == 0 ? Array(RunDirectory.defaultPath().utf8) : [])
            configuration.runDirectory = String(decoding: name, as: UTF8.self)
        }
        let settled = configuration
        let data = try communicator.collectively { try LoadedData.load(settled) }
        let spec = checkpoint?.spec ?? ModelSpec(configuration, image: data.train.shape)
        try communicator.collectively { try data.validate(for: spec) }
        return try run(spec.modelType, spec: spec, data: data, configuration: configuration, checkpoint: checkpoint)
    }

    private func run<Model: TrainableModel>(_: Model.Type, spec: ModelSpec, data: LoadedData,
                                            configuration: TrainingConfiguration,
                                            checkpoint: Checkpoint?) throws -> TrainingSummary {
        let trainer = try Trainer<Model>(configuration: configuration, spec: spec, data: data,
                                         communicator: communicator, console: console, resumingFrom: checkpoint)
        trainer.measureKernels = profile
        // Test hooks: VAE_MPI_FAIL_AT=rank:step makes that rank fail there
        // (the abort path); VAE_MPI_DIVERGE_AT=rank:step nudges one of its
        // parameters (the replica check).
        func rankAndStep(_ variable: String) -> (Int, Int)? {
            guard let value = ProcessInfo.processInfo.environment[variable] else { return nil }
            let parts = value.split(separator: ":").compactMap { Int($0) }
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
        trainer.injectedFailure = rankAndStep("VAE_MPI_FAIL_AT")
        trainer.injectedDivergence = rankAndStep("VAE_MPI_DIVERGE_AT")
        printConfiguration(configuration, spec: spec, data: data, trainer: trainer)
        if let note = trainer.resumeNote { console.print(note) }
        let summary = try trainer.run()
        printSummary(summary)
        if profile { try printProfile(summary.timings, batch: configuration.batchSize) }
        return summary
    }

    func printConfiguration<Model: TrainableModel>(_ c: TrainingConfiguration, spec: ModelSpec, data: LoadedData,
                                                   trainer: Trainer<Model>) {
        let rows: [(String, String)] = [
            ("model", "\(spec.summary), \(trainer.layout.nonEmptyEntries.count) tensors, \(trainer.layout.count) parameters"),
            ("likelihood", (spec.likelihood == .gaussian ? "gaussian, σ = \(spec.sigma)" : spec.likelihood.rawValue)
                + ", β = \(c.beta)" + (c.klWarmupSteps > 0 ? " after a \(c.klWarmupSteps)-step warm-up" : "")
                + (c.freeBits > 0 ? ", free bits \(c.freeBits) nats per dimension" : "")),
            ("data", "\(data.train.count) train (\(data.train.source)), \(data.test.count) test"
                + (c.testFraction != nil && c.testFile == nil ? " (held out)" : " (\(data.test.source))") + " images of \(spec.image)"),
            ("ranks", "\(communicator.size) (rank 0 on \(communicator.hostName)), \(c.threads) BLAS thread\(c.threads == 1 ? "" : "s") each"),
            ("batch", "\(c.batchSize) global (\(trainer.plan.localBatch(rank: 0)) on rank 0), "
                + plural(trainer.plan.stepsPerEpoch, "step") + " per epoch"),
            ("optimizer", "Adam, lr \(c.learningRate), betas (0.9, 0.999), eps 1e-8"),
            ("schedule", plural(c.epochs, "epoch") + (c.maxSteps.map { ", at most " + plural($0, "step") } ?? "")
                + ", log every \(c.logEvery) steps, checkpoint "
                + (c.checkpointEvery.map { "every \($0) steps" } ?? "each epoch") + " (keep \(c.keepCheckpoints))"),
            ("seed", "\(c.seed)"),
            ("run directory", c.runDirectory),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        console.print("vae-mpi train")
        for (key, value) in rows {
            console.print("  " + key + String(repeating: " ", count: width - key.count) + "  " + value)
        }
    }

    func printSummary(_ s: TrainingSummary) {
        var line = "done: \(s.steps) steps, \(s.samplesSeen) samples in \(formatDuration(s.trainingSeconds))"
        if let e = s.finalEvaluation {
            line += "; final test loss \(String(format: "%.3f", e.loss)) nats/sample, "
                + "\(String(format: "%.4f", e.bitsPerDimension)) bits/dim"
        }
        console.print(line + "; outputs in \(s.runDirectory)")
    }

    /// Per-step breakdown, averaged over ranks (one small allreduce); also
    /// one `PROFILE {json}` line for scripts (scripts/bench.sh).
    func printProfile(_ t: StepTimings, batch: Int) throws {
        var v = [t.forwardBackward, t.gemm, t.im2col, t.allreduce, t.optimizer, t.data, t.pack, t.total]
        try communicator.allreduceSum(&v)
        let scale = 1e3 / Double(max(t.steps, 1) * communicator.size)
        let ms = v.map { $0 * scale }
        let (fb, gemm, im2col, allreduce, optimizer, data, pack, step) = (ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6], ms[7])
        let elementwise = fb - gemm - im2col
        let samplesPerSecond = Double(batch) / step * 1e3
        func f(_ x: Double) -> String { String(format: "%.3f", x) }
        console.print("profile: ms per step, mean over \(t.steps) steps (after \(StepTimings.warmupSteps) warm-up) and \(communicator.size) rank\(communicator.size == 1 ? "" : "s")")
        console.print("  forward+backward  \(f(fb))   GEMM \(f(gemm)), im2col/col2im \(f(im2col)), elementwise and other \(f(elementwise))")
        console.print("  allreduce         \(f(allreduce))")
        console.print("  optimizer         \(f(optimizer))")
        console.print("  other             \(f(data + pack))   (batch and noise \(f(data)), gradient packing \(f(pack)))")
        console.print("  step              \(f(step))   → \(String(format: "%.0f", samplesPerSecond)) samples/s; step / GEMM = \(String(format: "%.2f", step / gemm))")
        console.print("PROFILE {\"ranks\": \(communicator.size), \"steps\": \(t.steps), \"batch\": \(batch), "
                      + "\"forward_backward_ms\": \(f(fb)), \"gemm_ms\": \(f(gemm)), \"im2col_ms\": \(f(im2col)), "
                      + "\"elementwise_ms\": \(f(elementwise)), \"allreduce_ms\": \(f(allreduce)), "
                      + "\"optimizer_ms\": \(f(optimizer)), \"other_ms\": \(f(data + pack)), \"step_ms\": \(f(step)), "
                      + "\"samples_per_s\": \(String(format: "%.1f", samplesPerSecond))}")
    }
}

/// "1 step", "2 steps".
func plural(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}
