import Artifacts
import Collectives
import Foundation
import TensorCore
import VAEModel

/// A checkpoint read back and verified: the sidecar parses and is of a
/// format this build reads, the safetensors file is well formed, and every
/// tensor matches its CRC-32 in the sidecar.
public struct Checkpoint: Sendable {
    /// The safetensors file.
    public let path: String
    public let sidecarPath: String
    public let sidecar: CheckpointSidecar
    public let tensors: SafetensorsFile

    public var spec: ModelSpec { sidecar.model }

    /// The run directory the checkpoint belongs to (the parent of `checkpoints/`).
    public var runDirectory: String {
        let dir = (path as NSString).deletingLastPathComponent
        return (dir as NSString).lastPathComponent == "checkpoints" ? (dir as NSString).deletingLastPathComponent : dir
    }

    /// Reads and verifies a checkpoint. `path` is a run directory, a
    /// checkpoints directory, a `.safetensors` file or its `.json` sidecar.
    public init(path: String) throws {
        let (tensorsPath, sidecarPath) = try CheckpointStore.resolve(path)
        try self.init(tensorsPath: tensorsPath, tensorBytes: try Files.read(tensorsPath),
                      sidecarPath: sidecarPath, sidecarBytes: try Files.read(sidecarPath))
    }

    /// Rank 0 reads the files (only its host needs them, like the run
    /// directory it writes) and broadcasts their bytes; every rank verifies.
    public static func load(_ path: String, communicator: Communicator) throws -> Checkpoint {
        let files = try communicator.collectively { () -> (String, [UInt8], String, [UInt8]) in
            guard communicator.rank == 0 else { return ("", [], "", []) }
            let (tensorsPath, sidecarPath) = try CheckpointStore.resolve(path)
            return (tensorsPath, try Files.read(tensorsPath), sidecarPath, try Files.read(sidecarPath))
        }
        let names = try communicator.broadcast(bytes: Array("\(files.0)\n\(files.2)".utf8))
        let parts = String(decoding: names, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let tensorBytes = try communicator.broadcast(bytes: files.1)
        let sidecarBytes = try communicator.broadcast(bytes: files.3)
        // Every rank checks the same bytes, so every rank reaches the same verdict.
        do {
            return try Checkpoint(tensorsPath: String(parts[0]), tensorBytes: tensorBytes,
                                  sidecarPath: String(parts[1]), sidecarBytes: sidecarBytes)
        } catch {
            throw CollectiveFailure.unanimous(error, rank: communicator.rank)
        }
    }

    init(tensorsPath: String, tensorBytes: [UInt8], sidecarPath: String, sidecarBytes: [UInt8]) throws {
        path = tensorsPath
        self.sidecarPath = sidecarPath
        let sidecar = try JSONText.decode(CheckpointSidecar.self, from: sidecarBytes, path: sidecarPath)
        guard sidecar.format == CheckpointSidecar.currentFormat else {
            throw ArtifactError.incompatible(path: sidecarPath, detail: "not a vae-mpi checkpoint (format \"\(sidecar.format)\")")
        }
        guard sidecar.formatVersion <= CheckpointSidecar.currentVersion else {
            throw ArtifactError.incompatible(
                path: sidecarPath,
                detail: "checkpoint format version \(sidecar.formatVersion) is newer than this vae-mpi reads "
                    + "(\(CheckpointSidecar.currentVersion)); use a newer vae-mpi")
        }
        let expectedName = (tensorsPath as NSString).lastPathComponent
        guard sidecar.tensorsFile == expectedName else {
            throw ArtifactError.corrupt(path: sidecarPath,
                                        check: "sidecar describes \(sidecar.tensorsFile), not \(expectedName)")
        }
        let tensors = try SafetensorsFile(parsing: tensorBytes, path: tensorsPath)
        for entry in tensors.entries {
            guard let expected = sidecar.checksums[entry.name] else {
                throw ArtifactError.corrupt(path: tensorsPath, check: "tensor \(entry.name) has no checksum in \(sidecarPath)")
            }
            let found = tensorChecksum(entry.scalars)
            guard found == expected else {
                throw ArtifactError.corrupt(
                    path: tensorsPath, check: "tensor \(entry.name) fails its checksum (sidecar \(expected), data \(found))")
            }
        }
        for name in sidecar.checksums.keys where tensors[name] == nil {
            throw ArtifactError.missingTensor(path: tensorsPath, name: name)
        }
        self.sidecar = sidecar
        self.tensors = tensors
    }

    /// The model, with every parameter taken from the checkpoint (names and
    /// shapes checked against the architecture of the sidecar's spec).
    public func model<Model: TrainableModel>(as _: Model.Type) throws -> Model {
        var model = Model(spec: spec, seed: 0)
        var error: Error? = nil
        var expected = Set<String>()
        model.walkParameters { name, tensor in
            guard error == nil, tensor.count > 0 else { return }
            expected.insert(name)
            guard let entry = tensors[name] else {
                error = ArtifactError.missingTensor(path: path, name: name)
                return
            }
            guard entry.shape == tensor.shape else {
                error = ArtifactError.shapeMismatch(path: path, parameter: name, expected: tensor.shape, found: entry.shape)
                return
            }
            tensor = Tensor(shape: entry.shape, scalars: entry.scalars)
        }
        if let error { throw error }
        for entry in tensors.entries where !entry.name.hasPrefix("optimizer.") && !expected.contains(entry.name) {
            throw ArtifactError.unexpectedTensor(path: path, name: entry.name)
        }
        return model
    }

    /// Adam with the checkpoint's moments, step count and hyperparameters.
    public func optimizer(layout: ParameterLayout) throws -> Adam {
        let o = sidecar.optimizer
        var adam = Adam(parameterCount: layout.count, learningRate: Float(o.learningRate),
                        beta1: Float(o.beta1), beta2: Float(o.beta2), epsilon: Float(o.epsilon))
        adam.step = o.step
        for e in layout.nonEmptyEntries {
            for (prefix, isFirst) in [("optimizer.exp_avg.", true), ("optimizer.exp_avg_sq.", false)] {
                guard let entry = tensors[prefix + e.name] else {
                    throw ArtifactError.missingTensor(path: path, name: prefix + e.name)
                }
                guard entry.shape == e.shape else {
                    throw ArtifactError.shapeMismatch(path: path, parameter: prefix + e.name, expected: e.shape, found: entry.shape)
                }
                if isFirst {
                    adam.firstMoment.replaceSubrange(e.offset ..< e.offset + e.count, with: entry.scalars)
                } else {
                    adam.secondMoment.replaceSubrange(e.offset ..< e.offset + e.count, with: entry.scalars)
                }
            }
        }
        return adam
    }
}
