/// Errors of a training run that are not about a file (those are
/// `DatasetError` and `ArtifactError`).
public enum TrainingError: Error, CustomStringConvertible {
    case invalidOption(option: String, detail: String)
    case nonFinite(step: Int, what: String)
    case replicasDiverged(ranks: [Int], hashes: [UInt64])
    case runDirectoryInUse(path: String)
    case incompatibleCheckpoint(path: String, detail: String)
    case injectedFailure(step: Int)

    public var description: String {
        switch self {
        case let .invalidOption(option, detail):
            return "\(option): \(detail)"
        case let .nonFinite(step, what):
            return "non-finite \(what) at step \(step); training stopped on every rank (try a lower --lr)"
        case let .replicasDiverged(ranks, hashes):
            let list = ranks.map { "rank \($0) (\(String(hashes[$0], radix: 16)))" }.joined(separator: ", ")
            return "model replicas differ from rank 0 (\(String(hashes[0], radix: 16))): \(list)"
        case let .runDirectoryInUse(path):
            return "\(path) already holds a run (config.json); choose another --run-dir, or continue it with --resume \(path)"
        case let .incompatibleCheckpoint(path, detail):
            return "\(path): \(detail)"
        case let .injectedFailure(step):
            return "injected failure at step \(step) (VAE_MPI_FAIL_AT)"
        }
    }
}
