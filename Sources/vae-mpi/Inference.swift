import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import TensorCore
import Training

extension DataSplit: ExpressibleByArgument {}

/// --checkpoint and --threads, shared by the subcommands that use a trained model.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A checkpoint: a run directory (its latest), a .safetensors file or its .json sidecar.",
                               valueName: "checkpoint"))
    var checkpoint: String

    @Option(help: "OpenBLAS threads per rank.")
    var threads: Int = 1

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1 (got \(threads))") }
    }

    /// Reads the checkpoint (rank 0, broadcast) and builds its model.
    func open(_ communicator: Communicator) throws -> InferenceContext {
        try InferenceContext(checkpoint: checkpoint, communicator: communicator, threads: threads)
    }
}

/// --data (or --images/--labels), --split and --batch-size, for subcommands that read images.
struct DataOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Dataset directory (default: the data the checkpoint was trained on).", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("An image file (IDX or .npy) instead of a dataset's split.", valueName: "file"))
    var images: String?

    @Option(help: ArgumentHelp("Labels of --images (IDX or .npy).", valueName: "file"))
    var labels: String?

    @Option(help: "Which images: test (t10k-*) or train (train-*).")
    var split: DataSplit = .test

    @Option(name: .long, help: "Images per forward pass.")
    var batchSize: Int = 500

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1 (got \(batchSize))") }
    }

    /// The images these options name, checked against the context's model.
    func images(in context: InferenceContext) throws -> ImageSet {
        try context.images(directory: data, file: images, labels: labels, split: split)
    }
}

/// An error about an option that every rank detects identically (after
/// reading the same data): reported once, every rank exits cleanly.
func optionError(_ option: String, _ detail: String, _ communicator: Communicator) -> Error {
    CollectiveFailure.unanimous(TrainingError.invalidOption(option: option, detail: detail), rank: communicator.rank)
}

func requireIndex(_ value: Int, below count: Int, _ option: String, in set: String, _ communicator: Communicator) throws {
    guard value >= 0 && value < count else {
        throw optionError(option, "\(value) is out of range: \(set) has \(count) images (0…\(count - 1))", communicator)
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode draws from the prior into a grid of images.")

    @OptionGroup var model: CheckpointOptions

    @Option(help: "Number of samples.")
    var count: Int = 64

    @Option(help: "Images per row of the grid (default: ⌈√count⌉).")
    var columns: Int?

    @Option(help: ArgumentHelp("Output PNG file.", valueName: "png"))
    var out: String

    @Option(help: "Seed of the latent draws (default: the checkpoint's seed).")
    var seed: UInt64?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1 (got \(count))") }
        if let columns, columns < 1 { throw ValidationError("--columns must be at least 1 (got \(columns))") }
    }

    func run() throws {
        let (options, count, columns, out, seed) = (model, count, columns, out, seed)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let image = context.model.spec.image
            let columns = columns ?? Int(Double(count).squareRoot().rounded(.up))
            try context.write(
                ImageGrid.raster(images: Inference.samples(context.model, count: count, seed: seed ?? context.seed).scalars,
                                 count: count, channels: image.channels, height: image.height, width: image.width,
                                 columns: columns),
                to: out, what: "\(count) samples from the prior")
        }
    }
}

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show images above their reconstructions (decoded posterior means).")

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(help: "Number of images, from --start on.")
    var count: Int = 8

    @Option(help: "Index of the first image.")
    var start: Int = 0

    @Option(help: "Pairs per row.")
    var columns: Int = 8

    @Option(help: ArgumentHelp("Output PNG file.", valueName: "png"))
    var out: String

    func validate() throws {
        guard count >= 1, columns >= 1, start >= 0 else {
            throw ValidationError("--count and --columns must be at least 1 and --start at least 0")
        }
    }

    func run() throws {
        let (options, dataOptions, count, start, columns, out) = (model, data, count, start, columns, out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            guard start + count <= images.count else {
                throw optionError("--count", "--start \(start) with --count \(count) needs \(start + count) images; "
                                  + "the \(dataOptions.split.rawValue) set has \(images.count)", communicator)
            }
            let x = images.batch(start ..< start + count)
            let y = Inference.reconstructions(context.model, of: x)
            // Rows of `columns` inputs, each above the row of their reconstructions.
            let d = images.shape.size
            var tiles: [Float] = []
            var tileCount = 0
            for rowStart in stride(from: 0, to: count, by: columns) {
                let n = min(columns, count - rowStart)
                for source in [x, y] {
                    tiles += source.scalars[rowStart * d ..< (rowStart + n) * d]
                    tiles += [Float](repeating: 1, count: (columns - n) * d)
                    tileCount += columns
                }
            }
            let shape = images.shape
            try context.write(
                ImageGrid.raster(images: tiles, count: tileCount, channels: shape.channels, height: shape.height,
                                 width: shape.width, columns: columns),
                to: out, what: "\(count) \(dataOptions.split.rawValue) images above their reconstructions")
        }
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the posterior means of a dataset as an N×Z float32 .npy file.",
        discussion: """
            The VAE as dimension reduction. When the dataset has a label file, the labels \
            (int64, N) are written beside the latents: latents.npy → labels.npy, \
            other names get a .labels.npy suffix (or give --labels-out). Under mpirun the \
            images are split over the ranks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(help: ArgumentHelp("Output .npy file for the latents.", valueName: "npy"))
    var out: String

    @Option(name: .customLong("labels-out"), help: ArgumentHelp("Output .npy file for the labels.", valueName: "npy"))
    var labelsOut: String?

    static func labelsPath(for out: String) -> String {
        let url = URL(fileURLWithPath: out)
        let name = url.lastPathComponent
        let dir = (out as NSString).deletingLastPathComponent
        let labels = name.contains("latents") ? name.replacingOccurrences(of: "latents", with: "labels")
            : (name.hasSuffix(".npy") ? String(name.dropLast(4)) : name) + ".labels.npy"
        return dir.isEmpty ? labels : dir + "/" + labels
    }

    func run() throws {
        let (options, dataOptions, out) = (model, data, out)
        let labelsOut = self.labelsOut ?? Self.labelsPath(for: out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            let z = context.model.latentSize
            let means = try Inference.encodeMeans(context.model, images: images, batchSize: dataOptions.batchSize,
                                                  communicator: communicator)
            try context.write(NPYWriter.encode(means, shape: [images.count, z]), to: out)
            context.console.print("wrote \(out): posterior means, \(images.count)×\(z) float32")
            if let labels = images.labels {
                try context.write(NPYWriter.encode(labels.map(Int64.init), shape: [labels.count]), to: labelsOut)
                context.console.print("wrote \(labelsOut): labels, \(labels.count) int64")
            }
        }
    }
}

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode the straight line between two images' posterior means.",
        discussion: "The strip shows image --from, the decoded path (--steps points, both ends included), and image --to.")

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(help: "Index of the first image.")
    var from: Int

    @Option(help: "Index of the second image.")
    var to: Int

    @Option(help: "Points on the path, both ends included.")
    var steps: Int = 10

    @Option(help: ArgumentHelp("Output PNG file.", valueName: "png"))
    var out: String

    func validate() throws {
        guard steps >= 2 else { throw ValidationError("--steps must be at least 2 (got \(steps))") }
    }

    func run() throws {
        let (options, dataOptions, from, to, steps, out) = (model, data, from, to, steps, out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            let set = "the \(dataOptions.split.rawValue) set"
            try requireIndex(from, below: images.count, "--from", in: set, communicator)
            try requireIndex(to, below: images.count, "--to", in: set, communicator)
            let a = images.batch([from]), b = images.batch([to])
            let path = Inference.interpolation(context.model, from: a, to: b, steps: steps)
            let shape = images.shape
            try context.write(
                ImageGrid.raster(images: a.scalars + path.scalars + b.scalars, count: steps + 2,
                                 channels: shape.channels, height: shape.height, width: shape.width,
                                 columns: steps + 2),
                to: out, what: "image \(from), \(steps) decoded points, image \(to)")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Test-set −ELBO and, with --importance-samples K, the importance-weighted −log p(x).",
        discussion: """
            The −ELBO uses the same noise as training's evaluation, so it reproduces the run's \
            last test loss. The importance-weighted bound (Burda et al. 2016) averages K samples \
            from q(z | x) per image with logsumexp; it is tighter than the ELBO and approaches \
            −log p(x) as K grows. Under mpirun the images are split over the ranks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: .customLong("importance-samples"), help: ArgumentHelp("Importance samples K per image (0: ELBO only).", valueName: "k"))
    var importanceSamples: Int = 0

    @Option(help: "Seed of the noise (default: the checkpoint's seed).")
    var seed: UInt64?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard importanceSamples >= 0 else { throw ValidationError("--importance-samples must be ≥ 0") }
    }

    func run() throws {
        let (options, dataOptions, k, seed, json) = (model, data, importanceSamples, seed, json)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            let result = try Inference.evaluate(context.model, images: images, seed: seed ?? context.seed,
                                                importanceSamples: k, batchSize: dataOptions.batchSize,
                                                communicator: communicator)
            if json {
                context.console.print(try JSONText.line(result))
                return
            }
            let e = result
            context.console.print("\(images.count) \(dataOptions.split.rawValue) images, checkpoint step \(context.checkpoint.sidecar.step)")
            context.console.print("  −ELBO          \(String(format: "%.3f", e.loss)) nats/sample, \(String(format: "%.4f", e.bitsPerDimension)) bits/dim "
                                  + "(reconstruction \(String(format: "%.3f", e.reconstruction)), KL \(String(format: "%.3f", e.kl)))")
            context.console.print("  active units   \(e.activeUnits) of \(e.klPerDimension.count) latent dimensions; KL per dimension "
                                  + e.klPerDimension.map { String(format: "%.2f", $0) }.joined(separator: " "))
            if let nll = result.importanceWeightedNLL, let bpd = result.importanceWeightedBitsPerDim {
                context.console.print("  −log p(x) ≈    \(String(format: "%.3f", nll)) nats/sample, \(String(format: "%.4f", bpd)) bits/dim "
                                      + "(importance-weighted, K = \(k))")
            }
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's configuration, position and tensors (after verifying it).")

    @Option(help: ArgumentHelp("A checkpoint: a run directory (its latest), a .safetensors file or its .json sidecar.",
                               valueName: "checkpoint"))
    var checkpoint: String

    @Flag(help: "Print one JSON object (with per-tensor statistics) instead of text.")
    var json = false

    struct TensorInfo: Codable {
        var name: String
        var shape: [Int]
        var checksum: String
        var min: Float
        var max: Float
        var sum: Double
    }

    struct Report: Codable {
        var path: String
        var formatVersion: Int
        var step: Int
        var epoch: Int
        var stepInEpoch: Int
        var worldSize: Int
        var model: ModelSpec
        var configuration: TrainingConfiguration
        var tensors: [TensorInfo]
    }

    func run() throws {
        let (path, json) = (checkpoint, json)
        Execution.run { communicator in
            let console = Console(rank: communicator.rank)
            let c = try Checkpoint.load(path, communicator: communicator)
            let s = c.sidecar
            let tensors = c.tensors.entries.map { e in
                TensorInfo(name: e.name, shape: e.shape, checksum: s.checksums[e.name] ?? "",
                           min: e.scalars.min() ?? 0, max: e.scalars.max() ?? 0,
                           sum: e.scalars.reduce(0.0) { $0 + Double($1) })
            }
            let report = Report(path: c.path, formatVersion: s.formatVersion, step: s.step, epoch: s.epoch,
                                stepInEpoch: s.stepInEpoch, worldSize: s.worldSize, model: s.model,
                                configuration: s.configuration, tensors: tensors)
            if json {
                console.print(try JSONText.line(report))
                return
            }
            let spec = s.model
            console.print("\(c.path) (format version \(s.formatVersion), checksums verified)")
            console.print("  step \(s.step), epoch \(s.epoch) (\(s.stepInEpoch) of \(s.stepsPerEpoch) steps), "
                          + "\(s.samplesSeen) samples seen, written by \(s.worldSize) rank\(s.worldSize == 1 ? "" : "s") at \(s.createdAt)")
            console.print("  model \(spec.summary), \(spec.likelihood.rawValue) likelihood"
                          + (spec.likelihood == .gaussian ? " (σ = \(spec.sigma))" : ""))
            console.print("  optimizer Adam, step \(s.optimizer.step), lr \(String(format: "%g", s.optimizer.learningRate))")
            console.print("  configuration: \(try JSONText.line(s.configuration))")
            let width = tensors.map(\.name.count).max() ?? 0
            for t in tensors {
                let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
                console.print("  " + t.name + String(repeating: " ", count: width - t.name.count) + "  "
                              + shape + String(repeating: " ", count: max(1, 14 - shape.count)) + t.checksum)
            }
        }
    }
}

struct LatentMap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latent-map",
        abstract: "Draw a 2-D latent space: the decoded manifold and a scatter of posterior means by label.",
        discussion: """
            Needs a model with a 2-dimensional latent space (train with --latent-dim 2). \
            Writes <prefix>-manifold.png, a 20×20 grid decoded at the standard-normal quantiles \
            0.05…0.95, and <prefix>-scatter.png, the posterior means of the images coloured by \
            label, with a legend.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(help: ArgumentHelp("Output file prefix.", valueName: "prefix"))
    var out: String = "latent"

    @Option(help: "Side of the manifold grid.")
    var side: Int = 20

    @Option(name: .customLong("label-names"), help: "Comma-separated class names for the legend (default: Fashion-MNIST's for that dataset, else numbers).")
    var labelNames: String?

    func run() throws {
        let (options, dataOptions, out, side, names) = (model, data, out, side, labelNames)
        Execution.run { communicator in
            let context = try options.open(communicator)
            guard context.model.latentSize == 2 else {
                throw optionError("--checkpoint", "\(context.checkpoint.path): the model's latent space has "
                                  + "\(context.model.latentSize) dimensions; latent-map needs 2 (train with --latent-dim 2)",
                                  communicator)
            }
            let dataPath = dataOptions.data ?? context.checkpoint.sidecar.configuration.data
            let images = try dataOptions.images(in: context)
            let means = try Inference.encodeMeans(context.model, images: images, batchSize: dataOptions.batchSize,
                                                  communicator: communicator)
            try context.write(Inference.manifold(context.model, side: side), to: out + "-manifold.png",
                              what: "\(side)×\(side) decoded latent grid")
            let labelNames = names.map { $0.split(separator: ",").map(String.init) } ?? Inference.labelNames(forData: dataPath)
            try context.write(
                Inference.scatter(means: means, labels: images.labels, labelNames: labelNames,
                                  title: "posterior means of \(images.count) \(dataOptions.split.rawValue) images, step \(context.checkpoint.sidecar.step)"),
                to: out + "-scatter.png", what: "scatter of \(images.count) posterior means")
        }
    }
}
