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

    /// Names of the classes the model's training data has (possibly none).
    public var classNames: [String] { trainingData.classNames ?? [] }

    /// The images of `split` from `source` (default: the data the model was
    /// trained on), or the images of `file` (with `labels`). They must have
    /// the model's image shape and suit its likelihood.
    public func images(from source: DataSource? = nil, file: String? = nil, labels: String? = nil,
                       split: DataSplit) throws -> ImageSet {
        let source = source ?? trainingData
        let (seed, architecture, image) = (checkpoint.configuration.seed, model.architecture, model.image)
        return try communicator.collectively {
            let set = try file.map { try ImageSet.load(images: $0, labels: labels) } ?? source.load(split, seed: seed)
            try set.validate(for: architecture, image: image)
            return set
        }
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

    /// The seed the checkpoint's run used (the default for sampling).
    public var seed: UInt64 { checkpoint.configuration.seed }
}
