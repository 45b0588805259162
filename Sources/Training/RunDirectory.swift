import Artifacts
import Foundation

/// Rank 0's run directory:
///
///     config.json                       resolved configuration
///     metrics.jsonl                     one JSON object per log event
///     samples/epoch-NNNN.png            8×8 grid decoded from the prior
///     reconstructions/epoch-NNNN.png    8 test images above their reconstructions
///     checkpoints/step-NNNNNNNN.{safetensors,json}, checkpoints/latest
final class RunDirectory {
    let root: String
    private let metrics: LineWriter

    var checkpoints: CheckpointStore { CheckpointStore(directory: "\(root)/checkpoints") }

    /// Creates a new run directory (refusing one that already holds a run),
    /// or reopens one for `resuming`, and writes config.json.
    init(root: String, configuration: TrainingConfiguration, resuming: Bool) throws {
        self.root = root
        let configPath = "\(root)/config.json"
        if !resuming && Files.exists(configPath) {
            throw TrainingError.runDirectoryInUse(path: root)
        }
        for sub in ["", "/samples", "/reconstructions", "/checkpoints"] {
            try Files.createDirectory(root + sub)
        }
        try Files.writeAtomically(try JSONText.pretty(configuration), to: configPath)
        metrics = try LineWriter(appendingTo: "\(root)/metrics.jsonl")
    }

    func log<Record: Encodable>(_ record: Record) throws {
        try metrics.write(try JSONText.line(record))
    }

    func picturePath(_ kind: String, epoch: Int) -> String {
        var digits = String(epoch)
        while digits.count < 4 { digits = "0" + digits }
        return "\(root)/\(kind)/epoch-\(digits).png"
    }

    /// A fresh default run directory name: runs/YYYYMMDD-HHMMSS (UTC), with a
    /// numeric suffix if that exists already.
    static func defaultPath() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let base = "runs/" + formatter.string(from: Date())
        var candidate = base
        var n = 2
        while Files.exists(candidate) {
            candidate = "\(base)-\(n)"
            n += 1
        }
        return candidate
    }
}

/// One line of metrics.jsonl for training progress.
struct TrainRecord: Encodable {
    let type = "train"
    var step: Int
    var epoch: Int
    /// Mean −ELBO per sample since the previous record (β-weighted KL as trained).
    var loss: Double
    var reconstruction: Double
    var kl: Double
    var samplesPerS: Double
    var learningRate: Double
    var elapsedS: Double
}

/// One line of metrics.jsonl for an evaluation on the test set.
struct EvalRecord: Encodable {
    let type = "eval"
    var step: Int
    var epoch: Int
    var testLoss: Double
    var testReconstruction: Double
    var testKl: Double
    var testBitsPerDim: Double
    var testSamples: Int
    var elapsedS: Double
}
