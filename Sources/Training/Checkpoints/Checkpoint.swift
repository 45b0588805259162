import Artifacts
import Collectives
import Foundation
import TensorCore
import VAEModel

/// The tensors of a checkpoint: every parameter under its PyTorch name, and
/// Adam's moments under `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>`
/// (PyTorch's names for them). Zero-element heads are left out.
struct CheckpointContents {
    var entries: [SafetensorsFile.Entry]

    init<Model: ParameterWalking>(model: Model, optimizer: Adam, layout: ParameterLayout) {
        var entries: [SafetensorsFile.Entry] = []
        for (name, tensor) in model.namedParameters where tensor.count > 0 {
            entries.append(.init(name: name, shape: tensor.shape, scalars: tensor.scalars))
        }
        for (prefix, moments) in [("optimizer.exp_avg.", optimizer.firstMoment),
                                  ("optimizer.exp_avg_sq.", optimizer.secondMoment)] {
            for e in layout.nonEmptyEntries {
                entries.append(.init(name: prefix + e.name, shape: e.shape,
                                     scalars: Array(moments[e.offset ..< e.offset + e.count])))
            }
        }
        self.entries = entries
    }

    var checksums: [String: String] {
        Dictionary(uniqueKeysWithValues: entries.map { ($0.name, tensorChecksum($0.scalars)) })
    }

    func file(metadata: [String: String]) -> SafetensorsFile {
        SafetensorsFile(entries: entries, metadata: metadata)
    }
}

/// The best evaluation so far, where it was, and how many evaluations have
/// passed without a better one. Better is a lower test loss, or, for a run
/// with held-out users (`--heldout-users`), a higher NDCG@100 (the paper
/// selects Mult-VAE's model by it; its test loss is kept beside it).
public struct EvaluationProgress: Codable, Equatable, Sendable {
    public var bestStep: Int?
    /// The best evaluation's test loss.
    public var bestTestLoss: Double?
    /// The best evaluation's NDCG@100, when the runs ranks held-out users.
    public var bestNDCG: Double?
    public var evaluationsWithoutImprovement = 0

    public init() {}

    /// Records an evaluation (`ndcg`: its NDCG@100, when users are ranked);
    /// true if it is the best so far.
    public mutating func record(testLoss: Double, ndcg: Double? = nil, step: Int) -> Bool {
        let better: Bool
        if let ndcg {
            better = bestNDCG.map { ndcg > $0 } ?? true
        } else {
            better = bestTestLoss.map { testLoss < $0 } ?? true
        }
        guard better else {
            evaluationsWithoutImprovement += 1
            return false
        }
        (bestStep, bestTestLoss, bestNDCG, evaluationsWithoutImprovement) = (step, testLoss, ndcg, 0)
        return true
    }

    /// "test loss 91.378" or "NDCG@100 0.4123": the best evaluation by its criterion.
    public var bestSummary: String {
        if let ndcg = bestNDCG { return String(format: "NDCG@100 %.4f", ndcg) }
        return String(format: "test loss %.3f", bestTestLoss ?? .nan)
    }

    /// What selects the best: "the test loss" or "the held-out users' NDCG@100".
    public var criterion: String { bestNDCG == nil ? "the test loss" : "the held-out users' NDCG@100" }
}

/// The JSON sidecar beside each checkpoint's safetensors file.
public struct CheckpointSidecar: Codable, Sendable {
    static let currentFormat = "vae-mpi-checkpoint"
    /// 2: the configuration holds the architecture and data source as values
    /// and the sidecar the image shape; version 1 (a flat configuration and
    /// a `model` spec) is still read.
    static let currentVersion = 2

    public struct OptimizerState: Codable, Sendable {
        public var type = "adam"
        public var step: Int
        public var learningRate: Double
        public var beta1: Double
        public var beta2: Double
        public var epsilon: Double

        init(adam: Adam) {
            step = adam.step
            learningRate = Double(adam.learningRate)
            beta1 = Double(adam.beta1)
            beta2 = Double(adam.beta2)
            epsilon = Double(adam.epsilon)
        }
    }

    /// Every random number is a pure function of these coordinates, so the
    /// seed and the position restore the whole random state.
    public struct RandomState: Codable, Sendable {
        public var generator = "philox4x32-10"
        public var seed: UInt64
        public var streams = [
            "training noise: (seed, training-noise, rank, global step)",
            "epoch order: (seed, epoch-shuffle, epoch, rank)",
            "data permutation: (seed, data-permutation)",
            "evaluation noise: (seed, evaluation-noise), block = test index",
            "prior samples: (seed, sampling)",
        ]
    }

    public var format = currentFormat
    public var formatVersion = currentVersion
    public var tensorsFile: String
    /// Global steps completed.
    public var step: Int
    /// The epoch in progress (1-based) and how many of its steps are done;
    /// `stepInEpoch == stepsPerEpoch` means that epoch is complete.
    public var epoch: Int
    public var stepInEpoch: Int
    public var stepsPerEpoch: Int
    public var worldSize: Int
    public var samplesSeen: Int
    public var optimizer: OptimizerState
    public var rng: RandomState
    public var configuration: TrainingConfiguration
    /// The shape of the images the model takes.
    public var image: ImageShape
    /// "crc32:xxxxxxxx" of each tensor's little-endian bytes.
    public var checksums: [String: String]
    public var createdAt: String
    /// The best test loss so far and the evaluations since (for
    /// `--keep-best` and `--early-stop` to continue after a resume).
    public var progress: EvaluationProgress?
    /// "crc32:xxxxxxxx" of this file's bytes with these eight digits as
    /// zeros (absent in sidecars written before it existed).
    public var sidecarChecksum: String?

    static let checksumPlaceholder = "crc32:00000000"

    /// The sidecar's JSON with its own checksum filled in.
    func encodedWithChecksum() throws -> String {
        var copy = self
        copy.sidecarChecksum = Self.checksumPlaceholder
        let text = try JSONText.pretty(copy)
        let crc = byteChecksum(Array(text.utf8))
        guard let range = text.range(of: "\"" + Self.checksumPlaceholder + "\"") else { return text }
        return text.replacingCharacters(in: range, with: "\"" + crc + "\"")
    }

    /// Checks a sidecar's bytes against the checksum they carry, if any.
    static func verifyChecksum(_ bytes: [UInt8], path: String) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let key = text.range(of: "\"sidecar_checksum\"") else { return }
        guard let open = text.range(of: "\"crc32:", range: key.upperBound..<text.endIndex),
              text.distance(from: key.upperBound, to: open.lowerBound) <= 4,
              let end = text.index(open.upperBound, offsetBy: 8, limitedBy: text.endIndex) else {
            throw ArtifactError.corrupt(path: path, check: "its sidecar_checksum is malformed")
        }
        let recorded = "crc32:" + text[open.upperBound..<end]
        let zeroed = text.replacingCharacters(in: open.upperBound..<end, with: "00000000")
        let found = byteChecksum(Array(zeroed.utf8))
        guard found == recorded else {
            throw ArtifactError.corrupt(path: path, check: "the sidecar fails its own checksum (recorded \(recorded), "
                                        + "contents \(found)): it was edited or damaged")
        }
    }

    init(tensorsFile: String, position: TrainingPosition, stepsPerEpoch: Int, worldSize: Int, adam: Adam,
         configuration: TrainingConfiguration, image: ImageShape, checksums: [String: String],
         progress: EvaluationProgress? = nil) {
        self.progress = progress
        self.tensorsFile = tensorsFile
        step = position.step
        epoch = position.epoch
        stepInEpoch = position.stepInEpoch
        samplesSeen = position.samplesSeen
        self.stepsPerEpoch = stepsPerEpoch
        self.worldSize = worldSize
        optimizer = OptimizerState(adam: adam)
        rng = RandomState(seed: configuration.seed)
        self.configuration = configuration
        self.image = image
        self.checksums = checksums
        createdAt = ISO8601DateFormatter().string(from: Date())
    }

    public var position: TrainingPosition {
        TrainingPosition(step: step, epoch: epoch, stepInEpoch: stepInEpoch, samplesSeen: samplesSeen)
    }

    /// Parses a sidecar of any format version this build reads.
    static func decode(_ bytes: [UInt8], path: String) throws -> CheckpointSidecar {
        struct Header: Decodable {
            var format: String
            var formatVersion: Int
        }
        let header = try JSONText.decode(Header.self, from: bytes, path: path)
        guard header.format == currentFormat else {
            throw ArtifactError.incompatible(path: path, detail: "not a vae-mpi checkpoint (format \"\(header.format)\")")
        }
        switch header.formatVersion {
        case currentVersion:
            return try JSONText.decode(CheckpointSidecar.self, from: bytes, path: path)
        case 1:
            return try JSONText.decode(CheckpointSidecarVersion1.self, from: bytes, path: path).upgraded()
        case let version where version > currentVersion:
            throw ArtifactError.incompatible(
                path: path,
                detail: "checkpoint format version \(version) is newer than this vae-mpi reads "
                    + "(\(currentVersion)); use a newer vae-mpi")
        case let version:
            throw ArtifactError.incompatible(path: path, detail: "unknown checkpoint format version \(version)")
        }
    }
}

/// A checkpoint read back and verified: the sidecar parses and is of a
/// format this build reads, the safetensors file is well formed, and every
/// tensor matches its CRC-32 in the sidecar.
public struct Checkpoint: Sendable {
    /// The safetensors file.
    public let path: String
    public let sidecarPath: String
    public let sidecar: CheckpointSidecar
    public let tensors: SafetensorsFile

    public var configuration: TrainingConfiguration { sidecar.configuration }
    public var architecture: Architecture { sidecar.configuration.architecture }

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
        // The format version first (a newer format may checksum differently), then the sidecar's own checksum.
        let sidecar = try CheckpointSidecar.decode(sidecarBytes, path: sidecarPath)
        try CheckpointSidecar.verifyChecksum(sidecarBytes, path: sidecarPath)
        // The configuration is checked by its components' rules, as options are (a crafted or damaged sidecar must not trap).
        do {
            try sidecar.configuration.validate()
            try sidecar.configuration.architecture.validateLimits(for: sidecar.image)
            guard sidecar.step >= 0, sidecar.epoch >= 1, sidecar.stepInEpoch >= 0, sidecar.stepsPerEpoch >= 1,
                  sidecar.worldSize >= 1, sidecar.samplesSeen >= 0 else {
                throw TrainingError.invalidConfiguration("the position (step \(sidecar.step), epoch \(sidecar.epoch), "
                                                         + "\(sidecar.stepInEpoch) of \(sidecar.stepsPerEpoch) steps) is impossible")
            }
        } catch let error as TrainingError {
            throw ArtifactError.incompatible(path: sidecarPath, detail: "\(error)")
        } catch let error as InvalidSetting {
            throw ArtifactError.incompatible(path: sidecarPath, detail: "\(TrainingError.invalidConfiguration("\(error)"))")
        } catch let error as ArchitectureError {
            throw ArtifactError.incompatible(path: sidecarPath, detail: "\(error)")
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
        // The tensors are the parameters (and Adam moments) of the architecture the sidecar describes.
        func check<Options: ArchitectureOptions>(_ options: Options) throws {
            // Counts first: building the model allocates what the sidecar describes, so the
            // file must hold that many parameters (a crafted sidecar must not allocate beyond it).
            let inFile = tensors.entries.filter { !$0.name.hasPrefix("optimizer.") }.reduce(0) { $0 + $1.scalars.count }
            let described = options.parameterCount(for: sidecar.image)
            guard inFile == described else {
                throw ArtifactError.incompatible(
                    path: tensorsPath, detail: "holds \(inFile) parameters, but the architecture its sidecar describes "
                        + "(\(options.summary(for: sidecar.image))) has \(described)")
            }
            let layout = try model(options).parameterLayout
            _ = try adam(layout: layout)
        }
        try check(sidecar.configuration.architecture.options)
    }

    /// The model of `options` (this checkpoint's architecture), with every
    /// parameter taken from the checkpoint: names and shapes are checked
    /// against the architecture the sidecar describes.
    public func model<Options: ArchitectureOptions>(_ options: Options) throws -> Options.Model {
        var model = options.makeModel(for: sidecar.image, seed: 0)
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
    public func adam(layout: ParameterLayout) throws -> Adam {
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
