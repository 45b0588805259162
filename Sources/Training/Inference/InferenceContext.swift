import Artifacts
import Collectives
import Datasets
import Foundation
import Imaging
import TensorCore

/// What every inference subcommand starts from: a verified checkpoint (read
/// by rank 0, broadcast to all), its model, and the communicator.
public struct InferenceContext {
    public let checkpoint: Checkpoint
    public let model: LoadedModel
    public let communicator: Communicator
    public let console: Console

    /// `precision` (default: the checkpoint's run's) sets how the model runs.
    public init(checkpoint path: String, communicator: Communicator, precision: Precision? = nil) throws {
        self.communicator = communicator
        console = Console(rank: communicator.rank)
        checkpoint = try Checkpoint.load(path, communicator: communicator)
        let checkpoint = self.checkpoint
        let c = checkpoint.configuration
        let backend = try communicator.collectively {
            try Backend(library: c.kernels, precision: precision ?? c.precision)
        }
        model = try communicator.collectively { try checkpoint.loadedModel(on: backend) }
    }

    /// The data source the model was trained on.
    public var trainingData: DataSource { checkpoint.configuration.data }

    /// The names of the D columns when the model's data are vectors (rows of
    /// a table); nil for images.
    public var columnNames: [String]? { trainingData.columnNames }

    /// Values in the training data's original units: standardized values
    /// restored (`Standardization.restore`), others as they are. (N, D) row-major.
    public func originalUnits(_ values: Tensor) -> [Double] {
        trainingData.standardization.map { $0.restore(values.scalars) } ?? values.scalars.map(Double.init)
    }

    /// Names of the classes the model's training data has (possibly none).
    public var classNames: [String] { trainingData.classNames ?? [] }

    /// The images of `split` from `source` (default: the data the model was
    /// trained on), or the images of `file` (with `labels`): an IDX or .npy
    /// file, or a folder of PNG and JPEG images (all of them; of the `split`
    /// folder in the train/test layout), decoded as the training images
    /// were. They must have the model's image shape and suit its
    /// likelihood; a conditional model needs their labels.
    public func images(from source: DataSource? = nil, file: String? = nil, labels: String? = nil,
                       split: DataSplit) throws -> ImageSet {
        let source = source ?? trainingData
        let (seed, architecture, image, model) = (checkpoint.configuration.seed, model.architecture, self.model.image, self.model)
        let trainingData = self.trainingData
        return try communicator.collectively {
            var set: ImageSet
            if let file, try DataFormat.of(file) == .imageFolder {
                set = try Self.folderImages(file, split: split, trainedOn: trainingData, image: image)
            } else if let file {
                // Read as the training files were (their levels, a table's columns), standardized by the training statistics.
                var options = trainingData.readOptions
                // --transpose is about the training matrix's axes: another file is read as its own format says.
                if try DataFormat.of(file) != .matrixMarket { options.transpose = false }
                // A log of interactions maps to the training log's items.
                if options.interactions != nil { options.items = trainingData.columnNames }
                set = try ImageSet.load(images: file, labels: labels, options: options)
                set.standardization = trainingData.standardization
                set.inputNormalization = trainingData.inputNormalization
            } else {
                set = try source.load(split, seed: seed)
            }
            try set.validate(for: architecture, image: image)
            if model.isConditional {
                guard let labels = set.labels else { throw TrainingError.conditionalWithoutLabels(source: set.source) }
                if let bad = labels.first(where: { $0 < 0 || Int($0) >= model.classes }) {
                    throw TrainingError.labelOutOfRange(source: set.source, label: bad, classes: model.classes)
                }
            }
            return set
        }
    }

    /// Every image of a folder (of `split` in the train/test layout),
    /// decoded with the training data's crop and size to the model's
    /// channels. Class folders named as the training classes take their
    /// labels; others keep the folder's own.
    static func folderImages(_ path: String, split: DataSplit, trainedOn training: DataSource,
                             image: ImageShape) throws -> ImageSet {
        let folder = try ImageFolder(scanning: path, skippingBadImages: training.skipBadImages == true)
        var files = split == .test && folder.test != nil ? folder.test! : folder.train
        if let names = folder.classNames, let trained = training.classNames, let labels = files.labels,
           names.allSatisfy(trained.contains) {
            files.labels = labels.map { Int32(trained.firstIndex(of: names[Int($0)])!) }
        }
        let decoding = try ImageDecoding(for: [files], channels: image.channels,
                                         size: training.imageSize.map { ($0[0], $0[1]) }, centerCrop: training.centerCrop)
        let source = folder.layout == .splits ? path + "/" + (folder.test != nil && split == .test ? "test" : "train") : path
        return try decoding.decode(files, skippingBad: training.skipBadImages == true, source: source).images
    }

    /// Rank 0 writes `bytes` to `path` atomically; every rank learns whether it worked.
    public func write(_ bytes: @autoclosure () throws -> [UInt8], to path: String) throws {
        let rank = communicator.rank
        try communicator.collectively {
            if rank == 0 { try Files.writeAtomically(try bytes(), to: path) }
        }
    }

    /// Rank 0 draws and writes a PNG, and says so.
    public func write(_ raster: @autoclosure () throws -> Raster, to path: String, what: String) throws {
        var size = ""
        try write({ () throws -> [UInt8] in
            let image = try raster()
            size = "\(image.width)×\(image.height)"
            return try image.pngData()
        }(), to: path)
        console.print("wrote \(path): \(what), \(size)")
    }

    /// " (name)" for class k when the training data names it, else "".
    public func className(_ k: Int) -> String {
        k < classNames.count ? " (\(classNames[k]))" : ""
    }

    /// The seed the checkpoint's run used (the default for sampling).
    public var seed: UInt64 { checkpoint.configuration.seed }
}
