import ArgumentParser
import Artifacts
import Collectives
import Compression
import Datasets
import Foundation
import Imaging
import TensorCore
import Training
import VAEModel

/// --latent-precision, --posterior-precision, --likelihood-precision.
struct PrecisionOptions: ParsableArguments {
    @Option(name: OptionName.latentPrecision.name, help: ArgumentHelp(
        "P: each latent dimension is cut into 2^P buckets of equal prior mass; the decoder sees their centres.", valueName: "bits"))
    var latent = CodecPrecisions.defaults.latent

    @Option(name: OptionName.posteriorPrecision.name, help: ArgumentHelp(
        "Bits of the quantised posterior's frequencies (every bucket keeps at least 1).", valueName: "bits"))
    var posterior = CodecPrecisions.defaults.posterior

    @Option(name: OptionName.likelihoodPrecision.name, help: ArgumentHelp(
        "Bits of the quantised likelihood's frequencies (every level keeps at least 1).", valueName: "bits"))
    var likelihood = CodecPrecisions.defaults.likelihood

    var precisions: CodecPrecisions { CodecPrecisions(latent: latent, posterior: posterior, likelihood: likelihood) }
}

/// The figures both commands print: rates in bits per sub-pixel and the speed.
func printRate(_ console: Console, file: CompressedFile, bytes: Int, seconds: Double, verb: String) {
    let h = file.header
    let dimensions = Double(h.count * h.image.size)
    let seedBits = 32 * h.seedWords + 64
    let net = file.chunks.reduce(0) { $0 + 32 * $1.words.count - seedBits }
    let total = Double(8 * bytes) / dimensions
    let overhead = 8 * bytes - net
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    console.print("  rate           \(f(total)) bits per sub-pixel in all (\(bytes) bytes for \(h.count) samples of \(h.image)),"
                  + " \(f(Double(net) / dimensions)) net of fixed overhead")
    console.print("  overhead       \(overhead / 8) bytes: header, chunk table, \(file.chunks.count) chain\(file.chunks.count == 1 ? "" : "s")"
                  + " × (\(h.seedWords) seed words + the final state)")
    if let elbo = h.elboBitsPerDimension {
        console.print("  model          −ELBO \(f(elbo)) bits per sub-pixel on these samples (training kernels); "
                      + "net rate / −ELBO = \(String(format: "%.4f", Double(net) / dimensions / elbo))")
    }
    console.print("  speed          \(String(format: "%.0f", Double(h.count) / max(seconds, 1e-9))) samples/s"
                  + " (\(verb) in \(String(format: "%.2f", seconds)) s)")
}

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress integer samples losslessly with a trained model (bits-back ANS) into a .vaez file.",
        discussion: """
            Bits-back coding with asymmetric numeral systems (BB-ANS, Townsend et al. 2019): the rate \
            approaches the model's −ELBO in bits per sub-pixel. The model needs a discrete likelihood \
            (discretized-logistic, beta-binomial, or bernoulli on 0/1 data) and no labels (an unconditional \
            model). Samples: \(OptionName.images) (a folder of 8-bit PNG/JPEG images, stored exactly; an .npy or \
            IDX file), or a split of \(OptionName.data) / the data the model was trained on. The network and every \
            frequency run on vae-mpi's own fixed-order kernels, so the file decodes to the same bytes with any \
            build on any x86-64 CPU, at any number of ranks. Under mpirun each rank codes its block of chunks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions
    @OptionGroup var precision: PrecisionOptions

    @Option(name: OptionName.out.name, help: ArgumentHelp("The compressed file.", valueName: "file.vaez"))
    var out: String

    @Option(name: OptionName.chunkSize.name, help: ArgumentHelp(
        "Samples per chain (each chain decodes on its own; default: the samples over the ranks, one chain each).",
        valueName: "n"))
    var chunkSize: Int?

    func validate() throws {
        try require(chunkSize, atLeast: 1, .chunkSize)
    }

    func run() throws {
        let (options, dataOptions, precisions, out, chunkSize) = (model, data, precision.precisions, out, chunkSize)
        Execution.run { communicator in
            let context = try options.open(communicator)
            let checkpoint = context.checkpoint.sidecar
            let codec: BitsBackCodec
            do {
                codec = try Inference.codec(context.checkpoint, precisions: precisions)
            } catch let error as InvalidSetting {
                throw optionError(OptionName(rawValue: error.field.replacingOccurrences(of: "_", with: "-")) ?? .checkpoint,
                                  error.detail, communicator)
            }
            let (set, format) = try communicator.collectively { try Self.samples(dataOptions, context) }
            let levels = codec.levels
            guard set.levels == levels else {
                throw optionError(dataOptions.images == nil ? .data : .images,
                                  "\(set.source) has \(set.levels.map { "\($0) levels" } ?? "real values"); the model "
                                  + "codes \(levels) levels (\(context.model.likelihood))", communicator)
            }
            let count = set.count
            let elbo = try Inference.evaluate(context.model, images: set, seed: context.seed,
                                              batchSize: dataOptions.batchSize, communicator: communicator)
            let samples = set.batch(0..<count, as: .levels).scalars.map { Int($0) }
            let hash = try Inference.modelHash(context.checkpoint)
            let size = chunkSize ?? (count + communicator.size - 1) / communicator.size
            let t0 = monotonicSeconds()
            let chunks = try Inference.compress(samples, count: count, codec: codec, chunkSize: size, communicator: communicator)
            let seconds = monotonicSeconds() - t0
            let header = CompressedFile.Header(
                modelHash: hash, checkpoint: context.checkpoint.path, architecture: checkpoint.configuration.architecture,
                image: checkpoint.image, levels: levels, count: count, precisions: precisions, seedWords: codec.seedWordCount,
                source: format, elboBitsPerDimension: elbo.bitsPerDimension, writer: "vae-mpi \(VAEMPI.configuration.version)")
            let file = CompressedFile(header: header, chunks: chunks)
            let bytes = file.bytes
            try context.write(bytes, to: out)
            context.console.print("wrote \(out): \(count) samples from \(set.source), \(chunks.count) chain\(chunks.count == 1 ? "" : "s")"
                                  + " on \(communicator.size) rank\(communicator.size == 1 ? "" : "s")")
            printRate(context.console, file: file, bytes: bytes.count, seconds: seconds, verb: "coded")
        }
    }

    /// The samples the options name, and how they were stored.
    static func samples(_ options: DataOptions, _ context: InferenceContext) throws -> (ImageSet, CompressedFile.SampleFormat) {
        let image = context.model.image
        let folder: String? = try options.images.flatMap { try DataFormat.of($0) == .imageFolder ? $0 : nil }
            ?? (options.images == nil ? (options.data ?? context.trainingData.directory).flatMap {
                (try? DataFormat.of($0)) == .imageFolder && context.trainingData.trainImages == nil ? $0 : nil } : nil)
        if let folder {
            if context.trainingData.imageSize != nil || context.trainingData.centerCrop != nil {
                throw DatasetError.incompatible(path: folder, detail: "the model was trained on resized or cropped images; "
                                                + "lossless compression codes images exactly as stored")
            }
            let exact = try ExactImages(folder: folder, split: options.split, shape: image)
            let set = ImageSet(shape: image, values: SampleValues(bytes: exact.pixels), source: folder)
            try set.validate(for: context.model.architecture, image: image)
            return (set, .images(names: exact.names))
        }
        let set = try options.images(in: context)
        switch try DataFormat.of(set.source) {
        case .npy:
            let array = try NPYArray(contentsOf: set.source)
            return (set, .npy(descr: array.dtype, shape: [set.count] + array.shape.dropFirst()))
        case .idx:
            let array = try IDXArray(contentsOf: set.source)
            return (set, .idx(dimensions: [set.count] + array.dimensions.dropFirst()))
        case .csv, .imageFolder, .datasetDirectory, .matrixMarket, .hdf5:
            throw DatasetError.incompatible(path: set.source, detail: "holds real values or counts; compression codes integer samples "
                                            + "(8-bit images, integer .npy arrays)")
        }
    }
}

struct Decompress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decompress a .vaez file back into the samples' file or folder, bit for bit.",
        discussion: """
            The samples come back as they were stored: an .npy array with its dtype and shape, an IDX \
            file, or a folder of PNG images with the original names (JPEG inputs are written as PNG, \
            with .png names). An \(OptionName.out) ending in .npy writes an array whatever the source. \
            The checkpoint defaults to the one the file names; another model is refused. Under mpirun \
            each rank decodes its block of chunks.
            """)

    @Argument(help: ArgumentHelp("The compressed file.", valueName: "file.vaez"))
    var file: String

    @Option(name: OptionName.checkpoint.name, help: ArgumentHelp(
        "The checkpoint the file was compressed with (default: the path it names).", valueName: "checkpoint"))
    var checkpoint: String?

    @Option(name: OptionName.out.name, help: ArgumentHelp(
        "Where to write the samples: a file (.npy, or the IDX it came from), or a folder (images).", valueName: "path"))
    var out: String

    @Option(name: OptionName.threads.name, help: "Kernel threads per rank.")
    var threads: Int = 1

    func run() throws {
        let (path, checkpointPath, out) = (file, checkpoint, out)
        Execution.run { communicator in
            let rank = communicator.rank
            let bytes = try communicator.collectively { () -> [UInt8] in
                guard rank == 0 else { return [] }
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw DatasetError.notFound(path: path, hint: "")
                }
                return [UInt8](data)
            }
            let shared = try communicator.broadcast(bytes: bytes)
            let file = try communicator.collectively { try CompressedFile(parsing: shared, path: path) }
            let header = file.header
            let context = try InferenceContext(checkpoint: checkpointPath ?? header.checkpoint, communicator: communicator)
            let hash = try communicator.collectively { try Inference.modelHash(context.checkpoint) }
            guard hash == header.modelHash else {
                throw CollectiveFailure.unanimous(CompressedFileError.wrongModel(
                    path: path, fileModel: header.modelHash, fileCheckpoint: header.checkpoint,
                    checkpoint: context.checkpoint.path, model: hash), rank: rank)
            }
            try communicator.collectively { try Self.checkOutput(out, header.source) }
            let codec = try communicator.collectively { try Inference.codec(context.checkpoint, precisions: header.precisions) }
            let t0 = monotonicSeconds()
            let samples = try Inference.decompress(file, path: path, codec: codec, communicator: communicator)
            let seconds = monotonicSeconds() - t0
            let what = try communicator.collectively { rank == 0 ? try Self.write(samples, header: header, to: out) : "" }
            context.console.print("wrote \(out): \(header.count) samples of \(header.image), \(what)")
            printRate(context.console, file: file, bytes: shared.count, seconds: seconds, verb: "decoded")
        }
    }

    /// Nothing is written over an existing file or into a folder that holds files.
    static func checkOutput(_ out: String, _ source: CompressedFile.SampleFormat) throws {
        var folder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: out, isDirectory: &folder)
        if case .images = source, !out.lowercased().hasSuffix(".npy") {
            if exists && !(folder.boolValue && ((try? FileManager.default.contentsOfDirectory(atPath: out))?.isEmpty ?? false)) {
                throw OptionError(option: .out, detail: "\(out) exists; the images go into a new (or empty) folder")
            }
        } else if exists {
            throw OptionError(option: .out, detail: "\(out) exists; choose a new file")
        }
    }

    /// Writes the samples as they were stored; returns what was written, for the message.
    static func write(_ samples: [Int], header: CompressedFile.Header, to out: String) throws -> String {
        let image = header.image
        if out.lowercased().hasSuffix(".npy") {
            if case let .npy(descr, shape) = header.source {
                try Files.writeAtomically(NPYWriter.encode(rawBytes: try NPYElements.encode(samples, descr: descr), descr: descr,
                                                           shape: shape), to: out)
                return "the .npy array (\(descr), \(shape.map(String.init).joined(separator: "×")))"
            }
            let descr = header.levels <= 256 ? "|u1" : "<u2"
            let shape = [header.count, image.channels, image.height, image.width]
            try Files.writeAtomically(NPYWriter.encode(rawBytes: try NPYElements.encode(samples, descr: descr), descr: descr,
                                                       shape: shape), to: out)
            return "as an .npy array (\(descr), \(shape.map(String.init).joined(separator: "×")))"
        }
        switch header.source {
        case let .idx(dimensions):
            try Files.writeAtomically(IDXArray.encode(dimensions: dimensions, bytes: samples.map { UInt8($0) }), to: out)
            return "the IDX file (\(dimensions.map(String.init).joined(separator: "×")))"
        case let .npy(descr, shape):
            try Files.writeAtomically(NPYWriter.encode(rawBytes: try NPYElements.encode(samples, descr: descr), descr: descr,
                                                       shape: shape), to: out)
            return "the .npy array (\(descr), \(shape.map(String.init).joined(separator: "×")))"
        case let .images(names):
            try Files.createDirectory(out)
            let (c, plane) = (image.channels, image.height * image.width)
            for (i, name) in names.enumerated() {
                var pixels = [UInt8](repeating: 0, count: image.size)
                for channel in 0..<c {
                    for p in 0..<plane { pixels[p * c + channel] = UInt8(samples[i * image.size + channel * plane + p]) }
                }
                let raster = Raster(width: image.width, height: image.height, channels: c, pixels: pixels)
                let lower = name.lowercased()
                let file = lower.hasSuffix(".png") ? name : (name as NSString).deletingPathExtension + ".png"
                let path = out + "/" + file
                try Files.createDirectory((path as NSString).deletingLastPathComponent)
                try Files.writeAtomically(try raster.pngData(), to: path)
            }
            return "\(names.count) PNG images"
        }
    }
}

/// Integer samples in an .npy dtype (any byte order).
enum NPYElements {
    static func encode(_ values: [Int], descr: String) throws -> [UInt8] {
        var code = Substring(descr)
        var big = false
        if let first = code.first, "<>|=".contains(first) {
            big = first == ">"
            code = code.dropFirst()
        }
        func bytes<T: FixedWidthInteger>(_: T.Type) -> [UInt8] {
            var out = [UInt8]()
            out.reserveCapacity(values.count * MemoryLayout<T>.size)
            for v in values { withUnsafeBytes(of: big ? T(v).bigEndian : T(v).littleEndian) { out += $0 } }
            return out
        }
        switch code {
        case "u1": return values.map { UInt8($0) }
        case "i1": return bytes(Int8.self)
        case "u2": return bytes(UInt16.self)
        case "i2": return bytes(Int16.self)
        case "u4": return bytes(UInt32.self)
        case "i4": return bytes(Int32.self)
        case "u8": return bytes(UInt64.self)
        case "i8": return bytes(Int64.self)
        default: throw DatasetError.incompatible(path: descr, detail: "is not an integer dtype this build writes")
        }
    }
}
