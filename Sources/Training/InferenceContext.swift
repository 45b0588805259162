import Artifacts
import Collectives
import Datasets
import Foundation
import TensorCore

/// Which part of a dataset directory to use.
public enum DataSplit: String, CaseIterable, Codable, Sendable {
    case test
    case train
}

/// What every inference subcommand starts from: a verified checkpoint (read
/// by rank 0, broadcast to all), its model, and the communicator.
public struct InferenceContext {
    public let checkpoint: Checkpoint
    public let model: LoadedModel
    public let communicator: Communicator
    public let console: Console

    public init(checkpoint path: String, communicator: Communicator, threads: Int = 1) throws {
        BLAS.setThreads(threads)
        BLAS.flushSubnormalsToZero()
        self.communicator = communicator
        console = Console(rank: communicator.rank)
        checkpoint = try Checkpoint.load(path, communicator: communicator)
        let checkpoint = self.checkpoint
        model = try communicator.collectively { try checkpoint.loadedModel() }
    }

    /// The images of `split` in `directory` (default: the directory the
    /// model was trained on), which must have the model's image shape.
    public func images(directory: String?, split: DataSplit) throws -> ImageSet {
        let path = directory ?? checkpoint.sidecar.configuration.data
        let spec = model.spec
        return try communicator.collectively {
            let files = try DatasetDirectory(path)
            let set = split == .test
                ? try ImageSet.loadIDX(images: files.testImages, labels: files.testLabels)
                : try ImageSet.loadIDX(images: files.trainImages, labels: files.trainLabels)
            guard set.shape == spec.image else {
                throw DatasetError.incompatible(
                    path: split == .test ? files.testImages : files.trainImages,
                    detail: "images are \(set.shape) but the checkpoint's model takes \(spec.image)")
            }
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

    /// Rank 0 writes a PNG and says so.
    public func write(_ raster: @autoclosure () throws -> Raster, to path: String, what: String) throws {
        guard communicator.rank == 0 else { return try write([], to: path) }
        let image = try raster()
        try write(try image.pngData(), to: path)
        console.print("wrote \(path): \(what), \(image.width)×\(image.height)")
    }

    /// The seed the checkpoint's run used (the default for sampling).
    public var seed: UInt64 { checkpoint.sidecar.configuration.seed }
}
