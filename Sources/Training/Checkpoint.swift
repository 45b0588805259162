import Artifacts
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

/// The JSON sidecar beside each checkpoint's safetensors file.
public struct CheckpointSidecar: Codable, Sendable {
    static let currentFormat = "vae-mpi-checkpoint"
    static let currentVersion = 1

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
    public var model: ModelSpec
    /// "crc32:xxxxxxxx" of each tensor's little-endian bytes.
    public var checksums: [String: String]
    public var createdAt: String

    init(tensorsFile: String, step: Int, epoch: Int, stepInEpoch: Int, stepsPerEpoch: Int,
         worldSize: Int, samplesSeen: Int, optimizer: OptimizerState, seed: UInt64,
         configuration: TrainingConfiguration, model: ModelSpec, checksums: [String: String]) {
        self.tensorsFile = tensorsFile
        self.step = step
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.stepsPerEpoch = stepsPerEpoch
        self.worldSize = worldSize
        self.samplesSeen = samplesSeen
        self.optimizer = optimizer
        self.rng = RandomState(seed: seed)
        self.configuration = configuration
        self.model = model
        self.checksums = checksums
        self.createdAt = ISO8601DateFormatter().string(from: Date())
    }
}
