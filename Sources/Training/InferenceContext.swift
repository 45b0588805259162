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

    /// The images of `split`: from `directory`, or from `file` (with
    /// `labels`), or else the data the model was trained on. They must have
    /// the model's image shape and suit its likelihood.
    public func images(directory: String?, file: String? = nil, labels: String? = nil,
                       split: DataSplit) throws -> ImageSet {
        var c = checkpoint.sidecar.configuration
        if let directory {
            (c.data, c.trainFile, c.testFile, c.trainLabels, c.testLabels) = (directory, nil, nil, nil, nil)
        }
        let spec = model.spec
        let c2 = c
        return try communicator.collectively {
            let set: ImageSet
            if let file {
                set = try ImageSet.load(images: file, labels: labels)
            } else {
                let data = try LoadedData.load(c2)
                set = split == .test ? data.test : data.train
            }
            try set.validate(for: spec)
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
    public var seed: UInt64 { checkpoint.sidecar.configuration.seed }
}
