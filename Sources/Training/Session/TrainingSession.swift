import Artifacts
import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Everything `vae-mpi train` does on each rank once the configuration is
/// settled: check it (against the checkpoint it resumes, the number of
/// ranks, the data), build the trainer, run it, and report.
public struct TrainingSession {
    public let configuration: TrainingConfiguration
    /// The checkpoint to continue from.
    public let checkpoint: Checkpoint?
    public let communicator: Communicator
    public let console: Console
    /// Time the steps' kernels and print a per-step breakdown at the end.
    public var profile: Bool
    public var faults: FaultInjection
    /// Make a new run's model conditional on the data's labels (`--conditional`).
    public var conditional: Bool
    /// Whether this rank has been asked to stop (SIGTERM, SIGINT): the ranks
    /// agree at the next step, checkpoint and end the run resumably.
    public var stopRequested: () -> Bool = { false }
    /// Images skipped as unreadable, as rank 0 heard of them.
    var skippedImages: [BadImage] = []

    public init(configuration: TrainingConfiguration, resumingFrom checkpoint: Checkpoint? = nil,
                communicator: Communicator, profile: Bool = false, faults: FaultInjection = FaultInjection(),
                conditional: Bool = false, console: Console? = nil) {
        self.configuration = configuration
        self.checkpoint = checkpoint
        self.communicator = communicator
        self.console = console ?? Console(rank: communicator.rank)
        self.profile = profile
        self.faults = faults
        self.conditional = conditional
    }

    @discardableResult
    public mutating func run() throws -> TrainingSummary {
        let rank = communicator.rank
        var configuration = self.configuration
        if let checkpoint, let change = configuration.changeOnResume(from: checkpoint) {
            throw CollectiveFailure.unanimous(TrainingError.changedOnResume(what: change, checkpoint: checkpoint.path),
                                              rank: rank)
        }
        do { try configuration.validate() } catch { throw CollectiveFailure.unanimous(error, rank: rank) }
        guard configuration.batchSize >= communicator.size else {
            throw CollectiveFailure.unanimous(
                TrainingError.batchSmallerThanRanks(batch: configuration.batchSize, ranks: communicator.size), rank: rank)
        }
        if configuration.reproducible {
            let valid = configuration.exactReduction.validWorldSizes(microShards: configuration.microShards)
            guard valid.contains(communicator.size) else {
                throw CollectiveFailure.unanimous(
                    TrainingError.reproducibleWorldSize(ranks: communicator.size, microShards: configuration.microShards,
                                                        method: configuration.exactReduction.rawValue, valid: valid),
                    rank: rank)
            }
        }
        // One run directory for all ranks: rank 0 names it.
        if configuration.runDirectory.isEmpty {
            let name = try communicator.broadcast(bytes: rank == 0 ? Array(RunDirectory.defaultPath().utf8) : [])
            configuration.runDirectory = String(decoding: name, as: UTF8.self)
        }
        // One run per directory: rank 0 holds its lock until the run ends.
        let lock = try communicator.collectively { () -> DirectoryLock? in
            guard rank == 0 else { return nil }
            return try DirectoryLock(directory: configuration.runDirectory, holder: Self.lockHolder(communicator))
        }
        defer { lock?.release() }
        if let previous = lock?.tookOverFrom {
            console.print("\(configuration.runDirectory): took over the lock left by \(previous), which is no longer running")
        }
        // Threads on shared cores, silently at a fraction of the speed: refused unless asked for.
        let threads = configuration.threads, allowShared = configuration.allowSharedCores == true
        let placement = Placement.current()
        try communicator.collectively {
            if let placement, threads > placement.cores.count, !allowShared {
                throw SharedCoresError(rank: rank, threads: threads, placement: placement)
            }
        }
        var (ready, data) = try prepareData(configuration)
        configuration = ready
        data.placements = try Self.gatherPlacements(placement, communicator: communicator)
        return try train(configuration.architecture.options, configuration: configuration, data: data)
    }

    /// Each rank's cores ("core 3", "cores 0-1"), for the header: the first
    /// 64 core ids as a bit mask from every rank.
    static func gatherPlacements(_ placement: Placement?, communicator: Communicator) throws -> [String] {
        var mask: UInt64 = 0
        for core in placement?.cores ?? [] where core < 64 { mask |= 1 << UInt64(core) }
        let large = (placement?.cores ?? []).contains { $0 >= 64 }
        let masks = try communicator.allGather(placement == nil || large ? UInt64.max : mask)
        return masks.map { m in
            guard m != .max else { return "?" }
            return Placement(cores: (0..<64).filter { m & (1 << UInt64($0)) != 0 }).summary
        }
    }

    /// Reads the data and settles what it decides in the configuration;
    /// returns this rank's shard and the test set. The whole training set
    /// read here is released on return (a mapped file's pages aside, which
    /// are the page cache's).
    mutating func prepareData(_ start: TrainingConfiguration) throws -> (TrainingConfiguration, ShardedData) {
        var configuration = start
        let settled = configuration
        let scanStart = monotonicSeconds()
        // With validation users, training evaluates on them; the test users are left for `recommend --evaluate`.
        let prepared = try communicator.collectively { try settled.data.prepare(seed: settled.seed) }.evaluatingOnValidation
        if let folder = prepared.folder {
            console.print("found \(folder.train.count + (folder.test?.count ?? 0)) images in \(folder.path) (\(folder.layout.rawValue)"
                          + (prepared.classNames.map { ", \($0.count) classes" } ?? ", no labels")
                          + "); headers read in \(String(format: "%.2f", monotonicSeconds() - scanStart)) s")
        }
        for note in prepared.notes { console.print(note) }
        if let classes = settled.data.trainClasses {
            console.print("keeping \(prepared.train.count) training and \(prepared.test.count) test images of classes "
                          + classes.joined(separator: ", ") + " (--train-classes)")
        }
        // Class names found in the data (an image folder's class folders) go into config.json and the checkpoints;
        // data without labels has none (a default source's names never label another data set's samples).
        configuration.data.classNames = prepared.classNames
        if conditional || configuration.architecture.conditionalClasses > 0 {
            let classes = try communicator.collectively { try Self.classCount(prepared, architecture: settled.architecture) }
            configuration.architecture.conditionalClasses = classes
        }
        // So do the column names of vectors (a table's header), for the outputs of the trained model.
        configuration.data.columnNames = prepared.columnNames
        // The statistics of --standardize, computed from the training set, go into config.json and the checkpoints.
        if configuration.data.standardize == true { configuration.data.standardization = prepared.standardization }
        // A likelihood over levels takes the data's number of levels (a resumed one must match them).
        let resolved = configuration.architecture.likelihood.resolved(for: prepared.description)
        if checkpoint == nil { configuration.architecture.likelihood = resolved }
        let image = checkpoint?.sidecar.image ?? prepared.shape
        let checked = configuration.architecture
        try communicator.collectively { try prepared.validate(for: checked, image: image) }
        var data = try loadShard(prepared, configuration: configuration)
        let architecture = configuration.architecture
        try communicator.collectively { try data.validate(for: architecture, image: image) }
        data.dataMemory = try communicator.allGather(UInt64(data.shard.values.privateBytes + data.test.values.privateBytes))
            .map { Int($0) }
        data.mapped = data.shard.values.isMapped
        return (configuration, data)
    }

    /// "pid 1234 on host node07 since 2026-12-02T08:15:00Z (np 4)".
    static func lockHolder(_ communicator: Communicator) -> String {
        "pid \(ProcessInfo.processInfo.processIdentifier) on host \(communicator.hostName) since "
            + ISO8601DateFormatter().string(from: Date()) + " (np \(communicator.size))"
    }

    /// K for a conditional model: the data's classes (the checkpoint's, when
    /// resuming, must agree), with every label inside them.
    static func classCount(_ prepared: PreparedData, architecture: Architecture) throws -> Int {
        guard let k = prepared.classCount, let trainLabels = prepared.train.labels else {
            throw TrainingError.conditionalWithoutLabels(source: prepared.source(.train))
        }
        if architecture.conditionalClasses > 0 && architecture.conditionalClasses != k {
            throw TrainingError.classCountChanged(checkpoint: architecture.conditionalClasses, data: k,
                                                  source: prepared.source(.train))
        }
        for split in DataSplit.allCases {
            let labels = split == .train ? trainLabels : prepared.test.labels
            guard let labels else { throw TrainingError.conditionalWithoutLabels(source: prepared.source(split)) }
            if let bad = labels.first(where: { $0 < 0 || Int($0) >= k }) {
                throw TrainingError.labelOutOfRange(source: prepared.source(split), label: bad, classes: k)
            }
        }
        return k
    }

    /// This rank's shard of the training set and the whole test set: an
    /// image folder's ranks each decode only their own shard's files. With
    /// bad images skipped, the shards keep what decoded, and rank 0 lists
    /// what did not.
    mutating func loadShard(_ prepared: PreparedData, configuration c: TrainingConfiguration) throws -> ShardedData {
        let rank = communicator.rank
        let t0 = monotonicSeconds()
        // --reproducible: every rank holds the whole training set, walked by the plan of one rank (global batches).
        let reproducible = c.reproducible
        let plan = ShardPlan(sampleCount: prepared.train.count, worldSize: reproducible ? 1 : communicator.size,
                             globalBatch: c.batchSize, seed: c.seed, blockSize: c.shuffleBlock)
        let (shard, test) = try communicator.collectively {
            (try prepared.load(.train, indices: plan.shardIndices(rank: reproducible ? 0 : rank)), try prepared.load(.test))
        }
        let seconds = monotonicSeconds() - t0
        var finalPlan = plan
        if case .files = prepared.train {
            let counts = try communicator.allGather(UInt64(shard.images.count)).map { Int($0) }
            let badCounts = try communicator.allGather(UInt64(shard.bad.count)).map { Int($0) }
            let slowest = try communicator.allGather(seconds.bitPattern).map { Double(bitPattern: $0) }.max() ?? seconds
            let decoded = zip(counts, badCounts).map { $0 + $1 }
            let testCount = test.images.count + test.bad.count
            let rate = Double((decoded.max() ?? 0) + testCount) / max(slowest, 1e-9)
            if reproducible {
                // Every rank decoded the same files and kept the same ones.
                finalPlan = plan.keeping(shardSizes: [shard.images.count])
                console.print("decoded \(decoded[0]) training images and \(plural(testCount, "test image")) on every rank "
                              + "(--reproducible) in \(String(format: "%.2f", slowest)) s, "
                              + "\(String(format: "%.0f", rate)) images/s per rank")
            } else {
                finalPlan = plan.keeping(shardSizes: counts)
                console.print("decoded \(decoded.reduce(0, +)) training images (each rank only its shard: "
                              + "\(decoded.map(String.init).joined(separator: ", ")) on ranks 0…\(communicator.size - 1)) "
                              + "and \(plural(testCount, "test image")) (on every rank) in \(String(format: "%.2f", slowest)) s, "
                              + "\(String(format: "%.0f", rate)) images/s per rank")
            }
            try reportBadImages(prepared.bad + test.bad, shardBad: reproducible && rank != 0 ? [] : shard.bad)
            guard finalPlan.sampleCount > 0 else {
                throw CollectiveFailure.unanimous(DatasetError.incompatible(path: prepared.source(.train),
                                                                            detail: "no training image could be decoded"),
                                                  rank: rank)
            }
            if test.images.count == 0 {
                throw CollectiveFailure.unanimous(DatasetError.incompatible(path: prepared.source(.test),
                                                                            detail: "no test image could be decoded"),
                                                  rank: rank)
            }
        }
        // How much is missing: a loaded set counts itself; an image folder's shards (masks beside it) add up.
        var missing = (count: 0, values: 0, emptyRows: 0)
        if case .loaded(let all) = prepared.train {
            missing = (all.missingCount, all.values.count, all.rowsWithoutObservedValues)
        } else if reproducible {
            missing = (shard.images.missingCount, shard.images.values.count, shard.images.rowsWithoutObservedValues)
        } else {
            let local = [shard.images.missingCount, shard.images.values.count, shard.images.rowsWithoutObservedValues]
            let all = try local.map { try communicator.allGather(UInt64($0)).reduce(0, +) }.map { Int($0) }
            missing = (all[0], all[1], all[2])
        }
        if missing.count > 0 {
            console.print("missing values: \(missing.count) of \(missing.values) training values "
                          + String(format: "(%.1f %%)", 100 * Double(missing.count) / Double(max(missing.values, 1)))
                          + "; the likelihood scores the observed ones only"
                          + (missing.emptyRows > 0
                             ? "; \(plural(missing.emptyRows, "row")) with no observed value train the KL term only" : ""))
        }
        return ShardedData(plan: finalPlan, shard: shard.images, test: test.images, shape: prepared.shape,
                           classNames: prepared.classNames, testIsHeldOut: prepared.testIsHeldOut,
                           trainSource: prepared.source(.train))
    }

    /// Rank 0 prints how many images were skipped as unreadable and lists
    /// them; every rank's own list reaches it (`shardBad`; `common` is the
    /// same on every rank).
    mutating func reportBadImages(_ common: [BadImage], shardBad: [BadImage]) throws {
        let counts = try communicator.allGather(UInt64(shardBad.count))
        guard !common.isEmpty || counts.contains(where: { $0 > 0 }) else { return }
        var all = common
        for r in 0..<communicator.size where counts[r] > 0 {
            let mine = communicator.rank == r ? Array((try? JSONEncoder().encode(shardBad)) ?? Data()) : []
            let bytes = try communicator.broadcast(bytes: mine, root: r)
            all += (try? JSONDecoder().decode([BadImage].self, from: Data(bytes))) ?? []
        }
        skippedImages = all
        console.print("skipped \(all.count) unreadable image\(all.count == 1 ? "" : "s") (--skip-bad-images):")
        for bad in all.prefix(20) { console.print("  \(bad.path): \(bad.reason)") }
        if all.count > 20 { console.print("  … and \(all.count - 20) more (all listed in metrics.jsonl)") }
    }

    private func train<Options: ArchitectureOptions>(_ options: Options, configuration: TrainingConfiguration,
                                                     data: ShardedData) throws -> TrainingSummary {
        let backend = try communicator.collectively {
            try Backend(library: configuration.kernels, precision: configuration.precision,
                        profiler: profile ? KernelProfiler() : nil)
        }
        let trainer = try Trainer(options, configuration: configuration, data: data, communicator: communicator,
                                  console: console, resumingFrom: checkpoint, backend: backend, faults: faults)
        try trainer.recordSkippedImages(skippedImages)
        trainer.stopRequested = stopRequested
        printConfiguration(configuration, data: data, trainer: trainer)
        if let note = trainer.resumeNote { console.print(note) }
        let summary = try trainer.run()
        if summary.interrupted {
            throw RunInterrupted(step: summary.steps, runDirectory: configuration.runDirectory)
        }
        printSummary(summary)
        if profile {
            try printProfile(summary.timings, batch: configuration.batchSize, kernelSummary: backend.profiler?.summary())
        }
        return summary
    }

    func printConfiguration<Model>(_ c: TrainingConfiguration, data: ShardedData, trainer: Trainer<Model>) {
        let image = trainer.image
        let kl = c.kl
        let rows: [(String, String)] = [
            ("model", "\(c.architecture.summary(for: image)), \(trainer.layout.nonEmptyEntries.count) tensors, "
                + "\(trainer.layout.count) parameters"),
            ("likelihood", "\(c.architecture.likelihood), β = \(kl.beta)"
                + (kl.warmupSteps > 0 ? " after a \(kl.warmupSteps)-step warm-up" : "")
                + (kl.freeBits > 0 ? ", free bits \(kl.freeBits) nats per dimension" : "")),
            ("data", "\(data.plan.sampleCount) train (\(data.trainSource)), "
                + (c.data.validationUsers.map { _ in "\(data.test.count) validation (held out; the evaluations below), "
                                                + "\(c.data.heldoutUsers ?? 0) test users (held out for recommend --evaluate)" }
                   ?? "\(data.test.count) test"
                   + (data.test.isTrainingSet ? " (no test set: the training set)" : data.testIsHeldOut ? " (held out)" : " (\(data.test.source))"))
                + " " + Self.kind(of: data.test)
                + (data.classNames.map { ", \($0.count) classes (\(Self.listing($0)))" } ?? "")),
            ("ranks", "\(communicator.size) (rank 0 on \(communicator.hostName)), "
                + "\(plural(c.threads, "kernel thread")) each"
                + (data.placements.isEmpty ? "" : "; " + Self.placementSummary(data.placements))),
            ("data memory", Self.memorySummary(data)),
            ("kernels", "\(c.kernels.rawValue), \(c.precision.rawValue)"
                + (c.precision == .bf16 ? " inputs to matrix products and convolutions (fp32 accumulation, parameters, gradients, optimizer)" : "")),
            ("batch", c.reproducible
                ? "\(c.batchSize) global in \(c.microShards) micro-shards (\(c.microShards / communicator.size) on each rank"
                    + (c.accumulate > 1 ? ", each in \(c.accumulate) micro-batches" : "") + "), "
                    + plural(trainer.stepsPerEpoch, "step") + " per epoch; reproducible at np "
                    + c.exactReduction.validWorldSizes(microShards: c.microShards).map(String.init).joined(separator: ", ")
                    + " (\(c.exactReduction.rawValue) sums)"
                : "\(c.batchSize) global (\(trainer.localBatchOfRankZero) on rank 0"
                    + (c.accumulate > 1 ? ", in \(c.accumulate) micro-batches" : "") + "), "
                    + plural(trainer.stepsPerEpoch, "step") + " per epoch"
                    + (c.shuffleBlock.map { "; shuffled in blocks of \($0) samples, windows of \(ShardPlan.shuffleWindow) blocks" } ?? "")),
            ("optimizer", "Adam, lr \(c.learningRate)"
                + (c.schedule == LearningRateSchedule() ? "" : " (\(c.schedule.summary(totalSteps: c.epochs * trainer.stepsPerEpoch)))")
                + ", betas (0.9, 0.999), eps 1e-8"
                + (c.shardOptimizer ? "; sharded over the ranks (reduce-scatter, 1/\(communicator.size) of the update each, allgather)" : "")
                + (c.gradientPrecision == .bf16 ? "; gradients exchanged in bf16" : "")),
            ("reduction", trainer.optimizer.reductionSummary),
            ("schedule", plural(c.epochs, "epoch") + (c.maxSteps.map { ", at most " + plural($0, "step") } ?? "")
                + ", log every \(c.logEvery) steps, checkpoint "
                + (c.checkpointEvery.map { "every \($0) steps" } ?? "each epoch") + " (keep \(c.keepCheckpoints)"
                + (c.keepBest ? " and the best" : "") + ")"
                + (c.earlyStop.map { ", early stop after \(plural($0, "evaluation")) without improvement" } ?? "")),
            ("seed", "\(c.seed)"),
            ("run directory", c.runDirectory),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        console.print("vae-mpi train")
        for (key, value) in rows {
            console.print("  " + key + String(repeating: " ", count: width - key.count) + "  " + value)
        }
    }

    /// "images of 1×28×28" (8-bit), "images of 1×28×28, 2 levels", "rows of 30 columns (…), standardized".
    static func kind(of set: ImageSet) -> String {
        var text = set.columnNames.map { "rows of \(plural($0.count, "column")) (\(listing($0)))" }
            ?? (set.isImages ? "images of \(set.shape)" : "vectors of \(set.shape.size) values")
        if let levels = set.levels, levels != 256 || set.values.element != .uint8 { text += ", \(levels) levels" }
        if set.standardization != nil { text += ", standardized" }
        if set.values.isSparse { text += ", sparse rows (CSR)" }
        if let storage = set.storageName { text += ", \(storage)" }
        if let n = set.inputNormalization { text += ", encoder reads \(n == .l2 ? "x/‖x‖" : "log(1 + x)")" }
        return text
    }

    /// "rank 0 on core 0, rank 1 on core 1" (at most 8 ranks listed).
    static func placementSummary(_ placements: [String]) -> String {
        let shown = placements.prefix(8).enumerated().map { "rank \($0) on \($1)" }
        return shown.joined(separator: ", ") + (placements.count > 8 ? ", …" : "")
    }

    /// "9.4 MB private per rank at most (shard and test set; the file mapped, its pages shared)".
    static func memorySummary(_ data: ShardedData) -> String {
        let most = data.dataMemory.max() ?? 0
        return String(format: "%.1f MB", Double(most) / 1e6) + " private per rank at most (shard and test set"
            + (data.mapped ? "; the file is mapped, its pages shared by the ranks of a node)" : ")")
    }

    static func listing(_ names: [String]) -> String {
        names.count <= 6 ? names.joined(separator: ", ") : names.prefix(5).joined(separator: ", ") + ", …, " + names.last!
    }

    func printSummary(_ s: TrainingSummary) {
        if configuration.keepBest, let step = s.progress.bestStep, s.progress.bestTestLoss != nil {
            console.print("best \(s.progress.bestSummary) at step \(step): checkpoints/best")
        }
        var line = "done: \(s.steps) steps, \(s.samplesSeen) samples in \(formatDuration(s.trainingSeconds))"
        if let e = s.finalEvaluation {
            line += "; final \(configuration.data.testFraction == 0 ? "training-set" : configuration.data.validationUsers != nil ? "validation" : "test") loss \(String(format: "%.3f", e.loss)) nats/sample"
                + (e.bitsPerDimension.map { String(format: ", %.4f bits/dim", $0) } ?? "")
        }
        console.print(line + "; outputs in \(s.runDirectory)")
    }

    /// Per-step breakdown, averaged over ranks (one small allreduce); also
    /// one `PROFILE {json}` line for scripts (scripts/bench.sh).
    func printProfile(_ t: StepTimings, batch: Int,
                      kernelSummary: [(name: String, calls: Int, millisecondsPerCall: Double, gflops: Double)]?) throws {
        var v = [t[.forwardBackward], t.gemm, t.layout, t[.reduction], t[.update], t[.data], t[.pack], t.total,
                 t.gemmFlops]
        try communicator.allreduceSum(&v)
        // The kernels' work per sample of the global batch, and their rate on this machine (all ranks).
        let flopsPerSample = v[8] / Double(max(t.steps, 1) * batch)
        let gemmRate = v[1] > 0 ? v[8] / (v[1] / Double(communicator.size)) : 0
        let scale = 1e3 / Double(max(t.steps, 1) * communicator.size)
        let ms = v.map { $0 * scale }
        let (fb, gemm, layout, allreduce, optimizer, data, pack, step) = (ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6], ms[7])
        let elementwise = fb - gemm - layout
        // Ranks that compute slower make the others wait inside the reduction.
        let compute = (t[.data] + t[.forwardBackward] + t[.pack] + t[.update]) * 1e3 / Double(max(t.steps, 1))
        let perRank = try communicator.allGather(compute.bitPattern).map { Double(bitPattern: $0) }
        let samplesPerSecond = Double(batch) / step * 1e3
        func f(_ x: Double) -> String { String(format: "%.3f", x) }
        console.print("profile: ms per step, mean over \(t.steps) steps (after \(StepTimings.warmupSteps) warm-up) "
                      + "and \(plural(communicator.size, "rank"))")
        console.print("  forward+backward  \(f(fb))   GEMM and convolution kernels \(f(gemm)), reorders/bf16 rounding/im2col \(f(layout)), elementwise and other \(f(elementwise))")
        console.print("  reduction         \(f(allreduce))   (the step's collectives, waiting for slower ranks included; "
                      + "compute per rank \(perRank.map(f).joined(separator: ", ")))")
        console.print("  optimizer         \(f(optimizer))")
        console.print("  other             \(f(data + pack))   (batch and noise \(f(data)), gradient completion and meta \(f(pack)))")
        console.print("  step              \(f(step))   → \(String(format: "%.0f", samplesPerSecond)) samples/s; step / GEMM = \(String(format: "%.2f", step / gemm))")
        console.print("  kernel work       " + String(format: "%.3f MFLOP per sample, at %.1f GFLOP/s (all ranks)",
                                                        flopsPerSample / 1e6, gemmRate / 1e9))
        if let kernels = kernelSummary, !kernels.isEmpty {
            console.print("  kernels on rank 0 (all steps, warm-up included):")
            for k in kernels {
                console.print("    " + k.name.padding(toLength: 46, withPad: " ", startingAt: 0)
                              + String(format: "%7d calls  %8.3f ms/call  %6.1f GFLOP/s", k.calls, k.millisecondsPerCall, k.gflops))
            }
        }
        console.print("PROFILE {\"ranks\": \(communicator.size), \"steps\": \(t.steps), \"batch\": \(batch), "
                      + "\"forward_backward_ms\": \(f(fb)), \"gemm_ms\": \(f(gemm)), \"layout_ms\": \(f(layout)), "
                      + "\"elementwise_ms\": \(f(elementwise)), \"allreduce_ms\": \(f(allreduce)), "
                      + "\"optimizer_ms\": \(f(optimizer)), \"other_ms\": \(f(data + pack)), \"step_ms\": \(f(step)), "
                      + "\"samples_per_s\": \(String(format: "%.1f", samplesPerSecond)), "
                      + "\"gemm_mflop_per_sample\": \(String(format: "%.4f", flopsPerSample / 1e6)), "
                      + "\"gemm_gflops\": \(String(format: "%.1f", gemmRate / 1e9))}")
    }
}

/// The run stopped at a stop request (a signal) after writing a checkpoint
/// at `step`: it can continue with `--resume runDirectory`.
public struct RunInterrupted: Error, CustomStringConvertible {
    public let step: Int
    public let runDirectory: String

    public var description: String {
        "interrupted at step \(step); checkpoint written to \(runDirectory)/checkpoints"
    }
}
