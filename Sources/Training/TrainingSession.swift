import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Everything `vae-mpi train` does on each rank: settle the configuration,
/// load data, build the trainer, run it, and report.
public struct TrainingSession {
    public var configuration: TrainingConfiguration
    public let communicator: Communicator
    public let console: Console
    /// Print a per-step time breakdown (with GEMM time) at the end.
    public var profile: Bool

    public init(configuration: TrainingConfiguration, communicator: Communicator, profile: Bool = false) {
        self.configuration = configuration
        self.communicator = communicator
        self.console = Console(rank: communicator.rank)
        self.profile = profile
    }

    @discardableResult
    public func run() throws -> TrainingSummary {
        var configuration = self.configuration
        let (rank, size) = (communicator.rank, communicator.size)
        BLAS.setThreads(configuration.threads)
        BLAS.flushSubnormalsToZero()

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
        let path = configuration.data
        let data = try communicator.collectively { try LoadedData.load(directory: path) }
        let spec = ModelSpec(kind: configuration.model, image: data.train.shape,
                             hiddenSize: configuration.hiddenSize, latentSize: configuration.latentSize,
                             likelihood: configuration.likelihood)
        return try run(spec.modelType, spec: spec, data: data, configuration: configuration)
    }

    private func run<Model: TrainableModel>(_: Model.Type, spec: ModelSpec, data: LoadedData,
                                            configuration: TrainingConfiguration) throws -> TrainingSummary {
        let trainer = try Trainer<Model>(configuration: configuration, spec: spec, data: data,
                                         communicator: communicator, console: console)
        trainer.measureGEMM = profile
        // VAE_MPI_FAIL_AT=rank:step makes that rank fail there (tests of the abort path).
        if let spec = ProcessInfo.processInfo.environment["VAE_MPI_FAIL_AT"] {
            let parts = spec.split(separator: ":").compactMap { Int($0) }
            if parts.count == 2 { trainer.injectedFailure = (parts[0], parts[1]) }
        }
        printConfiguration(configuration, spec: spec, data: data, trainer: trainer)
        let summary = try trainer.run()
        printSummary(summary)
        if profile { try printProfile(summary.timings, batch: configuration.batchSize) }
        return summary
    }

    func printConfiguration<Model: TrainableModel>(_ c: TrainingConfiguration, spec: ModelSpec, data: LoadedData,
                                                   trainer: Trainer<Model>) {
        let rows: [(String, String)] = [
            ("model", "\(spec.kind.rawValue) \(spec.image.size)-\(spec.hiddenSize)-\(spec.latentSize), "
                + "\(trainer.layout.nonEmptyEntries.count) tensors, \(trainer.layout.count) parameters"),
            ("likelihood", "\(spec.likelihood.rawValue), β = \(c.beta)"),
            ("data", "\(c.data): \(data.train.count) train, \(data.test.count) test images of \(spec.image)"),
            ("ranks", "\(communicator.size) (rank 0 on \(communicator.hostName)), \(c.threads) BLAS thread\(c.threads == 1 ? "" : "s") each"),
            ("batch", "\(c.batchSize) global (\(trainer.plan.localBatch(rank: 0)) on rank 0), "
                + "\(trainer.plan.stepsPerEpoch) steps per epoch"),
            ("optimizer", "Adam, lr \(c.learningRate), betas (0.9, 0.999), eps 1e-8"),
            ("schedule", "\(c.epochs) epochs" + (c.maxSteps.map { ", at most \($0) steps" } ?? "")
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

    /// Per-step breakdown, averaged over ranks (one small allreduce).
    func printProfile(_ t: StepTimings, batch: Int) throws {
        var v = [t.forwardBackward, t.gemm, t.allreduce, t.optimizer, t.data + t.pack, t.total, t.data, t.pack]
        try communicator.allreduceSum(&v)
        let scale = 1e3 / Double(max(t.steps, 1) * communicator.size)
        let ms = v.map { $0 * scale }
        console.print("profile (ms per step, mean over \(t.steps) steps and \(communicator.size) ranks):")
        console.print("  forward+backward \(String(format: "%.3f", ms[0]))  (GEMM \(String(format: "%.3f", ms[1])))")
        console.print("  allreduce        \(String(format: "%.3f", ms[2]))")
        console.print("  optimizer        \(String(format: "%.3f", ms[3]))")
        console.print("  other            \(String(format: "%.3f", ms[4]))  (batch and noise \(String(format: "%.3f", ms[6])), "
                      + "gradient packing \(String(format: "%.3f", ms[7])))")
        console.print("  step             \(String(format: "%.3f", ms[5]))  → \(String(format: "%.0f", Double(batch) / ms[5] * 1e3)) samples/s")
    }
}
