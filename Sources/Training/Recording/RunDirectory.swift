import Artifacts
import Foundation

/// Rank 0's run directory:
///
///     config.json                       resolved configuration
///     metrics.jsonl                     one JSON object per log event
///     samples/epoch-NNNN.png            8×8 grid decoded from the prior (conditional: a row per class)
///     reconstructions/epoch-NNNN.png    8 test images above their reconstructions
///     latent-manifold/epoch-NNNN.png    (2-D latent) decoded 20×20 grid of the latent plane
///     latent-scatter/epoch-NNNN.png     (2-D latent) test-set posterior means by label
///     curves.png                        −ELBO, reconstruction, KL and learning rate per step (and ranking metrics)
///     events.out.tfevents.*             TensorBoard scalars and images
///     checkpoints/step-NNNNNNNN.{safetensors,json}, checkpoints/latest (and best)
final class RunDirectory {
    let root: String
    private let metrics: AppendingFile
    let tensorboard: TensorBoardWriter

    var checkpoints: CheckpointStore { CheckpointStore(directory: "\(root)/checkpoints") }
    /// Whether this directory held a run that stopped before its first checkpoint.
    private(set) var reusedAbandonedRun = false

    /// Removes what a run that stopped before its first checkpoint wrote
    /// (only vae-mpi's own files: config, metrics, events, pictures, temporaries).
    static func clearAbandonedRun(_ root: String) throws {
        for name in try Files.list(root) {
            let path = "\(root)/\(name)"
            if ["config.json", "metrics.jsonl", "curves.png"].contains(name) || name.hasPrefix("events.out.tfevents.")
                || name.contains(".tmp-") {
                try Files.remove(path)
            } else if ["samples", "reconstructions", "latent-manifold", "latent-scatter", "checkpoints"].contains(name),
                      Files.isDirectory(path) {
                for inner in try Files.list(path) where inner.hasSuffix(".png") || inner.contains(".tmp-") {
                    try Files.remove("\(path)/\(inner)")
                }
            }
        }
    }

    /// Creates a new run directory (refusing one that already holds a run),
    /// or, `resumingAt` a step, reopens one: metrics after that step (written
    /// by the interrupted run past its last checkpoint) are dropped, and a new
    /// TensorBoard file starts with a SessionLog START just after it, which
    /// makes TensorBoard drop those too. Writes config.json.
    init(root: String, configuration: TrainingConfiguration, resumingAt resumeStep: Int?) throws {
        self.root = root
        let configPath = "\(root)/config.json"
        if resumeStep == nil && Files.exists(configPath) {
            // A run that died before its first checkpoint can be neither resumed
            // nor kept: its directory is reused (the caller holds the lock).
            guard !Files.exists("\(root)/checkpoints/latest") else { throw TrainingError.runDirectoryInUse(path: root) }
            try Self.clearAbandonedRun(root)
            reusedAbandonedRun = true
        }
        // Pictures of images; of vectors (table rows), only the latent scatter.
        let images = configuration.data.columnNames == nil
        var subdirectories = ["", "/checkpoints"] + (images ? ["/samples", "/reconstructions"] : [])
        if configuration.architecture.latentSize == 2 { subdirectories += (images ? ["/latent-manifold"] : []) + ["/latent-scatter"] }
        for sub in subdirectories {
            try Files.createDirectory(root + sub)
        }
        try Files.writeAtomically(try JSONText.pretty(configuration), to: configPath)
        let metricsPath = "\(root)/metrics.jsonl"
        if let resumeStep, Files.exists(metricsPath) {
            let kept = try Files.readText(metricsPath).split(separator: "\n").filter { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let step = object["step"] as? Int else { return false }
                return step <= resumeStep
            }
            try Files.writeAtomically(kept.map { $0 + "\n" }.joined(), to: metricsPath)
        }
        metrics = try AppendingFile(appendingTo: metricsPath)
        let now = Date().timeIntervalSince1970
        tensorboard = try TensorBoardWriter(directory: root, wallTime: now)
        // Events of the interrupted run after the checkpoint are superseded.
        if let resumeStep { try tensorboard.sessionStart(step: resumeStep + 1, wallTime: now) }
    }

    func log<Record: Encodable>(_ record: Record) throws {
        try metrics.write(line: try JSONText.line(record))
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
