import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import Training
import TensorCore
import VAEModel

extension DataSplit: ExpressibleByArgument {}

/// --checkpoint and --threads, shared by the subcommands that use a trained model.
struct CheckpointOptions: ParsableArguments {
    @Option(name: OptionName.checkpoint.name,
            help: ArgumentHelp("A checkpoint: a run directory (its latest), a .safetensors file or its .json sidecar.",
                               valueName: "checkpoint"))
    var checkpoint: String

    @Option(name: OptionName.threads.name, help: "Kernel threads per rank.")
    var threads: Int = 1

    @Option(name: OptionName.precision.name, help: "fp32 or bf16 inputs to the kernels (default: the checkpoint's run's).")
    var precision: Precision?

    func validate() throws {
        try require(threads, atLeast: 1, .threads)
    }

    /// Reads the checkpoint (rank 0, broadcast) and builds its model.
    func open(_ communicator: Communicator) throws -> InferenceContext {
        BLAS.setThreads(threads)
        return try InferenceContext(checkpoint: checkpoint, communicator: communicator, precision: precision)
    }
}

/// --data (or --images/--labels), --split and --batch-size, for subcommands that read images.
struct DataOptions: ParsableArguments {
    @Option(name: OptionName.data.name,
            help: ArgumentHelp("Dataset directory (default: the data the checkpoint was trained on).", valueName: "dir"))
    var data: String?

    @Option(name: OptionName.images.name, help: ArgumentHelp(
        "Images instead of a dataset's split: an IDX or .npy file, or a folder of PNG and JPEG images (all of them, in class folders or not; in the train/test layout, those of \(OptionName.split)).",
        valueName: "path"))
    var images: String?

    @Option(name: OptionName.labels.name, help: ArgumentHelp("Labels of \(OptionName.images) (IDX or .npy, or FILE.csv:COLUMN: the table a model was trained with by --covariate).", valueName: "file"))
    var labels: String?

    @Option(name: OptionName.split.name, help: "Which images: test (t10k-*) or train (train-*).")
    var split: DataSplit = .test

    @Option(name: OptionName.batchSize.name, help: "Images per forward pass.")
    var batchSize: Int = 500

    func validate() throws {
        try require(batchSize, atLeast: 1, .batchSize)
    }

    /// The images these options name, checked against the context's model.
    func images(in context: InferenceContext) throws -> ImageSet {
        try context.images(from: data.map { context.trainingData.reading(directory: $0) }, file: images, labels: labels,
                           split: split)
    }

    /// "the test set" or the file's name, for messages.
    var setName: String { images ?? "the \(split.rawValue) set" }
}

extension Observation: ExpressibleByArgument {}

/// Whether an output file is a table (.csv or .npy) rather than a picture.
func isTable(_ path: String) -> Bool {
    let lower = path.lowercased()
    return lower.hasSuffix(".csv") || lower.hasSuffix(".npy")
}

/// Pictures are of images: a model of table rows writes .csv or .npy instead.
func requirePicture(_ out: String, _ context: InferenceContext, _ communicator: Communicator) throws {
    guard context.columnNames == nil || isTable(out) else {
        throw optionError(.out, "\(context.checkpoint.path) models rows of a table (columns "
                          + context.columnNames!.prefix(6).joined(separator: ", ") + (context.columnNames!.count > 6 ? ", …" : "")
                          + "), not images: write a .csv or .npy file", communicator)
    }
}

/// Rows of samples (N, D) as a table: .csv with the training columns'
/// header (or x1…xD) in the original units, or .npy (N×C×H×W for images,
/// N×D for vectors, float32, in the original units).
func writeTable(_ rows: Tensor, to out: String, what: String, _ context: InferenceContext) throws {
    let n = rows.shape[0], image = context.model.image
    // Computed in Float: written with Float's digits.
    let values = context.originalUnits(rows).map { Double(Float($0)) }
    if out.lowercased().hasSuffix(".csv") {
        let header = context.columnNames ?? (1...image.size).map { "x\($0)" }
        try context.write(CSVWriter.encode(header: header, values: values), to: out)
        context.console.print("wrote \(out): \(what), \(n) rows of \(header.count) columns")
        return
    }
    let shape = context.columnNames == nil ? [n, image.channels, image.height, image.width] : [n, image.size]
    try context.write(NPYWriter.encode(values.map { Float($0) }, shape: shape), to: out)
    context.console.print("wrote \(out): \(what), " + shape.map(String.init).joined(separator: "×") + " float32")
}

func requireIndex(_ value: Int, below count: Int, _ option: OptionName, in set: String, _ communicator: Communicator) throws {
    guard value >= 0 && value < count else {
        throw optionError(option, "\(value) is out of range: \(set) has \(count) images (0…\(count - 1))", communicator)
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode draws from the prior into a grid of images.")

    @OptionGroup var model: CheckpointOptions

    @Option(name: OptionName.count.name, help: "Number of samples.")
    var count: Int = 64

    @Option(name: OptionName.columns.name, help: "Images per row of the grid (default: ⌈√count⌉).")
    var columns: Int?

    @Option(name: OptionName.out.name, help: ArgumentHelp(
        "Output PNG file (a grid of images), .npy file (N×C×H×W, or N×D for rows of a table, float32) or .csv file (one row per sample, the training columns' header, in the original units).",
        valueName: "file"))
    var out: String

    @Option(name: OptionName.seed.name, help: "Seed of the latent draws (default: the checkpoint's seed).")
    var seed: UInt64?

    @Option(name: OptionName.observation.name, help: "What each latent draw becomes: mean (E[x | z]) or sample (a draw x ~ p(x | z), levels for a discrete likelihood).")
    var observation: Observation = .mean

    @Option(name: OptionName.label.name, help: ArgumentHelp(
        "A conditional model: draw class k (0…K−1). Without it, one row per class, each column one latent draw decoded for every class.",
        valueName: "k"))
    var label: Int?

    func validate() throws {
        try require(count, atLeast: 1, .count)
        try require(columns, atLeast: 1, .columns)
        try require(label, atLeast: 0, .label)
    }

    func run() throws {
        let (options, count, columns, out, seed, label, observation) = (model, count, columns, out, seed, label, observation)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let model = context.model
            let seed = seed ?? context.seed
            try requirePicture(out, context, communicator)
            if let label {
                guard model.isConditional else {
                    throw optionError(.label, "\(context.checkpoint.path) holds an unconditional model; "
                                      + "\(OptionName.label) needs one trained with \(OptionName.conditional)", communicator)
                }
                guard label < model.classes else {
                    throw optionError(.label, "\(label) is out of range: the model has \(model.classes) classes (0…\(model.classes - 1))",
                                      communicator)
                }
            }
            if model.isConditional && label == nil && !isTable(out) {
                let columns = columns ?? min(count, 8)
                let samples = Inference.classSamples(model, columns: columns, seed: seed, observation: observation)
                try context.write(Inference.grid(samples, image: model.image, columns: columns), to: out,
                                  what: "\(columns) samples of each of the \(model.classes) classes (one row per class)")
                return
            }
            let columns = columns ?? Int(Double(count).squareRoot().rounded(.up))
            let samples = Inference.samples(model, count: count, seed: seed, label: label.map(Int32.init), observation: observation)
            let what = label.map { "\(count) samples of class \($0)" + context.className($0) } ?? "\(count) samples from the prior"
            if isTable(out) {
                try writeTable(samples, to: out, what: what, context)
                return
            }
            try context.write(Inference.grid(samples, image: model.image, columns: columns), to: out, what: what)
        }
    }
}

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show images above their reconstructions (decoded posterior means).")

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.count.name, help: "Number of images, from \(OptionName.start) on.")
    var count: Int = 8

    @Option(name: OptionName.start.name, help: "Index of the first image.")
    var start: Int = 0

    @Option(name: OptionName.columns.name, help: "Pairs per row.")
    var columns: Int = 8

    @Option(name: OptionName.out.name, help: ArgumentHelp(
        "Output PNG file (images above their reconstructions), or .npy / .csv file (the reconstructions, one row per sample; CSV with the training columns' header, in the original units).",
        valueName: "file"))
    var out: String

    func validate() throws {
        try require(count, atLeast: 1, .count)
        try require(columns, atLeast: 1, .columns)
        try require(start, atLeast: 0, .start)
    }

    func run() throws {
        let (options, dataOptions, count, start, columns, out) = (model, data, count, start, columns, out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            guard start + count <= images.count else {
                throw optionError(.count, "\(OptionName.start) \(start) with \(OptionName.count) \(count) needs \(start + count) images; "
                                  + "\(dataOptions.setName) has \(images.count)", communicator)
            }
            let x = images.batch(start ..< start + count)
            let condition = context.model.condition(of: images, start ..< start + count)
            if isTable(out) {
                try writeTable(Inference.reconstructions(context.model, of: x, condition: condition), to: out,
                               what: "reconstructions of \(dataOptions.split.rawValue) samples \(start)…\(start + count - 1)", context)
                return
            }
            try requirePicture(out, context, communicator)
            try context.write(
                Inference.reconstructionGrid(inputs: x, reconstructions: Inference.reconstructions(context.model, of: x,
                                                                                                   condition: condition),
                                             image: images.shape, columns: columns),
                to: out, what: "\(count) \(dataOptions.split.rawValue) images above their reconstructions")
        }
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the posterior means of a dataset as an N×Z float32 .npy file.",
        discussion: """
            The VAE as dimension reduction. When the images have labels (a label file, or \
            class folders), the labels (int64, N) are written beside the latents: \
            latents.npy → labels.npy, other names get a .labels.npy suffix (or give \
            \(OptionName.labelsOut)); with class names, those go into labels.txt beside them, \
            line k naming label k. A conditional model encodes each image with its label. \
            Under mpirun the images are split over the ranks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.out.name, help: ArgumentHelp(
        "Output file for the latents: .npy (N×Z float32), or .csv (columns z1…zZ, and a label column when there are labels).",
        valueName: "file"))
    var out: String

    @Option(name: OptionName.labelsOut.name, help: ArgumentHelp("Output .npy file for the labels.", valueName: "npy"))
    var labelsOut: String?

    func run() throws {
        let (options, dataOptions, out) = (model, data, out)
        let labelsOut = self.labelsOut ?? Inference.labelsPath(forLatents: out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            let z = context.model.latentSize
            let means = try Inference.encodeMeans(context.model, images: images, batchSize: dataOptions.batchSize,
                                                  communicator: communicator)
            if out.lowercased().hasSuffix(".csv") {
                let names = context.classNames
                let labelColumn = images.labels.map { labels in
                    [(name: "label", values: labels.map { Int($0) < names.count ? names[Int($0)] : String($0) })]
                } ?? []
                try context.write(CSVWriter.encode(header: (1...z).map { "z\($0)" }, floats: means, extraColumns: labelColumn),
                                  to: out)
                context.console.print("wrote \(out): posterior means, \(images.count) rows of z1…z\(z)"
                                      + (labelColumn.isEmpty ? "" : " and their labels"))
                return
            }
            try context.write(NPYWriter.encode(means, shape: [images.count, z]), to: out)
            context.console.print("wrote \(out): posterior means, \(images.count)×\(z) float32")
            if let labels = images.labels {
                try context.write(NPYWriter.encode(labels.map(Int64.init), shape: [labels.count]), to: labelsOut)
                context.console.print("wrote \(labelsOut): labels, \(labels.count) int64")
                let names = context.classNames
                if !names.isEmpty {
                    let namesOut = Inference.classNamesPath(forLabels: labelsOut)
                    try context.write(Array(names.map { $0 + "\n" }.joined().utf8), to: namesOut)
                    context.console.print("wrote \(namesOut): class names, line k names label k ("
                                          + names.enumerated().prefix(10).map { "\($0.offset) \($0.element)" }.joined(separator: ", ")
                                          + (names.count > 10 ? ", …" : "") + ")")
                }
            }
        }
    }
}

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode the straight line between two images' posterior means.",
        discussion: "The strip shows image \(OptionName.from), the decoded path (\(OptionName.steps) points, both ends included), and image \(OptionName.to). A conditional model moves from the first image's label to the second's along the way.")

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.from.name, help: "Index of the first image.")
    var from: Int

    @Option(name: OptionName.to.name, help: "Index of the second image.")
    var to: Int

    @Option(name: OptionName.steps.name, help: "Points on the path, both ends included.")
    var steps: Int = 10

    @Option(name: OptionName.out.name, help: ArgumentHelp("Output PNG file.", valueName: "png"))
    var out: String

    func validate() throws {
        try require(steps, atLeast: 2, .steps)
    }

    func run() throws {
        let (options, dataOptions, from, to, steps, out) = (model, data, from, to, steps, out)
        Execution.run { communicator in
            let context = try options.open(communicator)
            try requirePicture(out, context, communicator)
            let images = try dataOptions.images(in: context)
            try requireIndex(from, below: images.count, .from, in: dataOptions.setName, communicator)
            try requireIndex(to, below: images.count, .to, in: dataOptions.setName, communicator)
            let a = images.batch([from]), b = images.batch([to])
            let model = context.model
            let conditions = model.isConditional
                ? (model.condition(of: images, from ..< from + 1), model.condition(of: images, to ..< to + 1)) : nil
            let path = Inference.interpolation(model, from: a, to: b, steps: steps, conditions: conditions)
            try context.write(Inference.interpolationStrip(from: a, path: path, to: b, image: images.shape),
                              to: out, what: "image \(from), \(steps) decoded points, image \(to)")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Test-set −ELBO and, with \(OptionName.importanceSamples) K, the importance-weighted −log p(x).",
        discussion: """
            The −ELBO uses the same noise as training's evaluation, so it reproduces the run's \
            last test loss. The importance-weighted bound (Burda et al. 2016) averages K samples \
            from q(z | x) per image with logsumexp; it is tighter than the ELBO and approaches \
            −log p(x) as K grows. Under mpirun the images are split over the ranks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.importanceSamples.name, help: ArgumentHelp("Importance samples K per image (0: ELBO only).", valueName: "k"))
    var importanceSamples: Int = 0

    @Option(name: OptionName.seed.name, help: "Seed of the noise (default: the checkpoint's seed).")
    var seed: UInt64?

    @Flag(name: OptionName.json.name, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        try require(importanceSamples, atLeast: 0, .importanceSamples)
    }

    func run() throws {
        let (options, dataOptions, k, seed, json) = (model, data, importanceSamples, seed, json)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let images = try dataOptions.images(in: context)
            let e = try Inference.evaluate(context.model, images: images, seed: seed ?? context.seed,
                                           importanceSamples: k, batchSize: dataOptions.batchSize,
                                           communicator: communicator)
            if json {
                context.console.print(try JSONText.line(e))
                return
            }
            func f(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }
            let terms = zip(ELBOTerms.reported, e.terms).map { "\($0.name) \(f($1))" }.joined(separator: ", ")
            context.console.print("\(images.count) \(dataOptions.split.rawValue) images, checkpoint step \(context.checkpoint.sidecar.step)")
            context.console.print("  −ELBO          \(f(e.loss)) nats/sample"
                                  + (e.bitsPerDimension.map { ", \(f($0, 4)) bits/dim" } ?? "") + " (\(terms))")
            context.console.print("  active units   \(e.activeUnits) of \(e.klPerDimension.count) latent dimensions; KL per dimension "
                                  + e.klPerDimension.map { f($0, 2) }.joined(separator: " "))
            if let nll = e.importanceWeightedNLL {
                context.console.print("  −log p(x) ≈    \(f(nll)) nats/sample"
                                      + (e.importanceWeightedBitsPerDim.map { ", \(f($0, 4)) bits/dim" } ?? "")
                                      + " (importance-weighted, K = \(k))")
            }
            if e.bitsPerDimension == nil {
                context.console.print("  (no bits/dim: the \(context.model.likelihood.name) likelihood of these values is not a "
                                      + "distribution over them, so −log₂ p is not a code length)")
            }
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's configuration, position and tensors (after verifying it).")

    @Option(name: OptionName.checkpoint.name,
            help: ArgumentHelp("A checkpoint: a run directory (its latest), a .safetensors file or its .json sidecar.",
                               valueName: "checkpoint"))
    var checkpoint: String

    @Flag(name: OptionName.json.name, help: "Print one JSON object (with per-tensor statistics) instead of text.")
    var json = false

    func run() throws {
        let (path, json) = (checkpoint, json)
        Execution.run { communicator in
            let console = Console(rank: communicator.rank)
            let report = CheckpointReport(try Checkpoint.load(path, communicator: communicator))
            if json {
                console.print(try JSONText.line(report))
                return
            }
            var lines = report.lines
            lines.insert("  configuration: \(try JSONText.line(report.configuration))", at: 4)
            lines.forEach(console.print)
        }
    }
}

struct LatentMap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latent-map",
        abstract: "Draw a 2-D latent space: the decoded manifold and a scatter of posterior means by label.",
        discussion: """
            Needs a model with a 2-dimensional latent space (train with \(OptionName.latentDim) 2). \
            Writes <prefix>-manifold.png, a 20×20 grid decoded at the standard-normal quantiles \
            0.05…0.95, and <prefix>-scatter.png, the posterior means of the images coloured by \
            label, with a legend.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.out.name, help: ArgumentHelp("Output file prefix.", valueName: "prefix"))
    var out: String = "latent"

    @Option(name: OptionName.side.name, help: "Side of the manifold grid.")
    var side: Int = 20

    @Option(name: OptionName.labelNames.name, help: "Comma-separated class names for the legend (default: the training data's class names, else numbers).")
    var labelNames: String?

    @Option(name: OptionName.label.name, help: ArgumentHelp("A conditional model: the class whose manifold to draw (default: 0).", valueName: "k"))
    var label: Int?

    func validate() throws {
        try require(side, atLeast: 2, .side)
        try require(label, atLeast: 0, .label)
    }

    func run() throws {
        let (options, dataOptions, out, side, names, label) = (model, data, out, side, labelNames, label)
        Execution.run { communicator in
            let context = try options.open(communicator)
            guard context.model.latentSize == 2 else {
                throw optionError(.checkpoint, "\(context.checkpoint.path): the model's latent space has "
                                  + "\(context.model.latentSize) dimensions; latent-map needs 2 (train with \(OptionName.latentDim) 2)",
                                  communicator)
            }
            let images = try dataOptions.images(in: context)
            let means = try Inference.encodeMeans(context.model, images: images, batchSize: dataOptions.batchSize,
                                                  communicator: communicator)
            let model = context.model
            if let label, !model.isConditional || label >= model.classes {
                throw optionError(.label, model.isConditional
                                  ? "\(label) is out of range: the model has \(model.classes) classes (0…\(model.classes - 1))"
                                  : "the model is unconditional; \(OptionName.label) needs one trained with \(OptionName.conditional)",
                                  communicator)
            }
            let drawn: Int32? = model.isConditional ? Int32(label ?? 0) : nil
            try context.write(Inference.manifold(model, side: side, label: drawn), to: out + "-manifold.png",
                              what: "\(side)×\(side) decoded latent grid" + (drawn.map { ", class \($0)" + context.className(Int($0)) } ?? ""))
            let labelNames = names.map { $0.split(separator: ",").map(String.init) } ?? context.classNames
            try context.write(
                Inference.scatter(means: means, labels: images.labels, labelNames: labelNames,
                                  title: "posterior means of \(images.count) \(dataOptions.split.rawValue) images, step \(context.checkpoint.sidecar.step)"),
                to: out + "-scatter.png", what: "scatter of \(images.count) posterior means")
        }
    }
}
