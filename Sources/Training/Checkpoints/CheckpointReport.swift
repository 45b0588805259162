import Artifacts
import TensorCore
import VAEModel

/// What `vae-mpi inspect` shows of a checkpoint: its position, model and
/// configuration, and each tensor's shape, checksum and value range.
public struct CheckpointReport: Encodable {
    public struct TensorInfo: Encodable {
        public var name: String
        public var shape: [Int]
        public var checksum: String
        public var min: Float
        public var max: Float
        public var sum: Double
    }

    public var path: String
    public var formatVersion: Int
    public var step: Int
    public var epoch: Int
    public var stepInEpoch: Int
    public var stepsPerEpoch: Int
    public var samplesSeen: Int
    public var worldSize: Int
    public var createdAt: String
    public var architecture: Architecture
    public var image: ImageShape
    public var summary: String
    public var parameterCount: Int
    public var optimizer: CheckpointSidecar.OptimizerState
    public var configuration: TrainingConfiguration
    public var tensors: [TensorInfo]

    public init(_ c: Checkpoint) {
        let s = c.sidecar
        path = c.path
        formatVersion = s.formatVersion
        step = s.step
        epoch = s.epoch
        stepInEpoch = s.stepInEpoch
        stepsPerEpoch = s.stepsPerEpoch
        samplesSeen = s.samplesSeen
        worldSize = s.worldSize
        createdAt = s.createdAt
        architecture = c.architecture
        image = s.image
        summary = c.architecture.summary(for: s.image)
        parameterCount = c.architecture.parameterCount(for: s.image)
        optimizer = s.optimizer
        configuration = s.configuration
        tensors = c.tensors.entries.map { e in
            TensorInfo(name: e.name, shape: e.shape, checksum: s.checksums[e.name] ?? "",
                       min: e.scalars.min() ?? 0, max: e.scalars.max() ?? 0,
                       sum: e.scalars.reduce(0.0) { $0 + Double($1) })
        }
    }

    /// The report as text lines.
    public var lines: [String] {
        var out = [
            "\(path) (format version \(formatVersion), checksums verified)",
            "  step \(step), epoch \(epoch) (\(stepInEpoch) of \(stepsPerEpoch) steps), \(samplesSeen) samples seen, "
                + "written by \(worldSize) rank\(worldSize == 1 ? "" : "s") at \(createdAt)",
            "  model \(summary), \(architecture.likelihood) likelihood, \(parameterCount) parameters",
            "  optimizer Adam, step \(optimizer.step), lr \(String(format: "%g", optimizer.learningRate))",
        ]
        let width = tensors.map(\.name.count).max() ?? 0
        for t in tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            out.append("  " + t.name + String(repeating: " ", count: width - t.name.count) + "  "
                       + shape + String(repeating: " ", count: max(1, 14 - shape.count)) + t.checksum)
        }
        return out
    }
}
