import TensorCore
import VAEModel

/// Errors of a training run that are not about reading a file (those are
/// `DatasetError`, `DataSourceError` and `ArtifactError`). The messages name
/// no command-line options: the executable words those for its users.
public enum TrainingError: Error, CustomStringConvertible {
    /// A non-finite loss or gradient: with the training images' value range
    /// when it explains it (unscaled data), else nil (then the learning rate is the usual cause).
    case nonFinite(step: Int, unscaledDataRange: ClosedRange<Float>?)
    case replicasDiverged(ranks: [Int], hashes: [UInt64])
    case runDirectoryInUse(path: String)
    case batchSmallerThanRanks(batch: Int, ranks: Int)
    /// `--reproducible` at a number of ranks that does not divide the micro-shards.
    case reproducibleWorldSize(ranks: Int, microShards: Int, method: String, valid: [Int])
    /// A resumed run would change what the checkpoint fixes.
    case changedOnResume(what: String, checkpoint: String)
    /// The data does not suit the architecture: `source` holds images the
    /// family cannot model.
    case unsupportedImages(source: String, family: String, image: ImageShape, requirement: ImageRequirement)
    case injectedFailure(step: Int)
    /// A configuration (from a checkpoint) that breaks the command line's rules.
    case invalidConfiguration(String)
    /// A conditional VAE on data without labels.
    case conditionalWithoutLabels(source: String)
    /// Labels outside the classes of a conditional model.
    case labelOutOfRange(source: String, label: Int32, classes: Int)
    /// A resumed conditional model on data with another number of classes.
    case classCountChanged(checkpoint: Int, data: Int, source: String)

    public var description: String {
        switch self {
        case let .nonFinite(step, range?):
            return "non-finite loss or gradient at step \(step); training stopped on every rank. The training images range "
                + "over [\(range.lowerBound), \(range.upperBound)]: inputs that large overflow the encoder's variance "
                + "(exp of log σ²) in the first steps at any learning rate; scale the data (to [0, 1], or standardize it)"
        case let .nonFinite(step, nil):
            return "non-finite loss or gradient at step \(step); training stopped on every rank (try a lower learning rate)"
        case let .replicasDiverged(ranks, hashes):
            let list = ranks.map { "rank \($0) (\(String(hashes[$0], radix: 16)))" }.joined(separator: ", ")
            return "model replicas differ from rank 0 (\(String(hashes[0], radix: 16))): \(list)"
        case let .runDirectoryInUse(path):
            return "\(path) already holds a run (config.json); choose another run directory, or resume that run"
        case let .batchSmallerThanRanks(batch, ranks):
            return "the global batch (\(batch)) must be at least the number of ranks (\(ranks))"
        case let .reproducibleWorldSize(ranks, microShards, method, valid):
            return "--reproducible cannot run on \(ranks) ranks: the \(microShards) micro-shards of each batch (--micro-shards) "
                + "must split evenly over the ranks\(method == "tree" ? ", a power of two of them (--exact-reduction tree)" : "")"
                + "; use np \(valid.map(String.init).joined(separator: ", ")), or another --micro-shards"
        case let .changedOnResume(what, checkpoint):
            return "cannot change \(what) when resuming: it fixes the model, the batches or the random streams of the run in \(checkpoint)"
        case let .unsupportedImages(source, family, image, requirement):
            return "the \(family) VAE needs \(requirement); \(source) has \(image) images"
        case let .injectedFailure(step):
            return "injected failure at step \(step) (VAE_MPI_FAIL_AT)"
        case let .invalidConfiguration(detail):
            return "its configuration is invalid: \(detail)"
        case let .conditionalWithoutLabels(source):
            return "a conditional VAE needs labelled samples, and \(source) has no labels "
                + "(give a label file or a table's column, FILE.csv:COLUMN, as trained with --covariate; "
                + "or put the images in one folder per class)"
        case let .labelOutOfRange(source, label, classes):
            return "\(source): label \(label) is outside the \(classes) classes 0…\(classes - 1) of the conditional model"
        case let .classCountChanged(checkpoint, data, source):
            return "the checkpoint's conditional model has \(checkpoint) classes but \(source) has \(data)"
        }
    }
}
