import ArgumentParser
import Collectives

/// Every long option of every subcommand, named once: the declarations use
/// `name`, and messages about an option interpolate the case ("\(OptionName.batchSize)"
/// prints --batch-size).
enum OptionName: String, CaseIterable, CustomStringConvertible {
    // train: data
    case data
    case trainFile = "train-file"
    case testFile = "test-file"
    case trainLabels = "train-labels"
    case testLabels = "test-labels"
    case testFraction = "test-fraction"
    case trainClasses = "train-classes"
    case channels
    case imageSize = "image-size"
    case centerCrop = "center-crop"
    case skipBadImages = "skip-bad-images"
    case levels
    case labelColumn = "label-column"
    case standardize
    case mask
    case interactions
    case userColumn = "user-column"
    case itemColumn = "item-column"
    case ratingColumn = "rating-column"
    case minRating = "min-rating"
    case transpose
    case heldoutUsers = "heldout-users"
    case validationUsers = "validation-users"
    case inputNormalization = "input-normalization"
    case inputDropout = "input-dropout"
    // train: architecture
    case model
    case likelihood
    case sigma
    case logisticMixtures = "logistic-mixtures"
    case convChannels = "conv-channels"
    case latentDim = "latent-dim"
    case hiddenDim = "hidden-dim"
    case hiddenDims = "hidden-dims"
    case activation
    case conditional
    case covariate
    case encoderCondition = "encoder-condition"
    case missingFill = "missing-fill"
    case dispersion
    // train: objective and optimizer
    case beta
    case klWarmupSteps = "kl-warmup-steps"
    case freeBits = "free-bits"
    case lr
    case lrSchedule = "lr-schedule"
    case lrWarmupSteps = "lr-warmup-steps"
    case lrDecayEpochs = "lr-decay-epochs"
    case lrDecay = "lr-decay"
    case accumulate
    case trainSamples = "train-samples"
    // train: schedule and outputs
    case epochs
    case batchSize = "batch-size"
    case seed
    case runDir = "run-dir"
    case maxSteps = "max-steps"
    case logEvery = "log-every"
    case verifyReplicas = "verify-replicas"
    case threads
    case allowSharedCores = "allow-shared-cores"
    case shuffleBlock = "shuffle-block"
    case kernels
    case precision
    case shardOptimizer = "shard-optimizer"
    case gradientPrecision = "gradient-precision"
    case reproducible
    case microShards = "micro-shards"
    case exactReduction = "exact-reduction"
    case checkpointEvery = "checkpoint-every"
    case keepCheckpoints = "keep-checkpoints"
    case keepBest = "keep-best"
    case earlyStop = "early-stop"
    case evalBatchSize = "eval-batch-size"
    case resume
    case profile
    case collectiveTimeout = "collective-timeout"
    // subcommands
    case checkpoint
    case images
    case labels
    case label
    case split
    case count
    /// train: a CSV file's columns; sample and reconstruct: images per row of the grid.
    case columns
    case observation
    case out
    case start
    case labelsOut = "labels-out"
    case from
    case to
    case steps
    case importanceSamples = "importance-samples"
    case json
    case side
    case labelNames = "label-names"
    case sizes
    case repeats
    case size
    case seconds
    case histogram
    case normalClasses = "normal-classes"
    case tolerance
    case contamination
    // recommend
    case evaluate
    case top
    // impute, inpaint
    case method
    case samples
    case iterations
    case burnIn = "burn-in"
    case multiple
    case truth
    case maskRect = "mask-rect"
    case maskRandom = "mask-random"
    case grid
    // compress, decompress
    case latentPrecision = "latent-precision"
    case posteriorPrecision = "posterior-precision"
    case likelihoodPrecision = "likelihood-precision"
    case chunkSize = "chunk-size"

    var name: NameSpecification { .customLong(rawValue) }
    var description: String { "--" + rawValue }
}

extension OptionName {
    /// The option that sets a configuration field (`InvalidSetting.field`,
    /// the key in config.json), when one does: rules live in the components,
    /// and their errors reach users under the option's name.
    init?(field: String) {
        let table: [String: OptionName] = [
            "epochs": .epochs, "batch_size": .batchSize, "log_every": .logEvery, "keep_checkpoints": .keepCheckpoints,
            "evaluation_batch_size": .evalBatchSize, "threads": .threads, "accumulate": .accumulate,
            "micro_shards": .microShards, "max_steps": .maxSteps, "checkpoint_every": .checkpointEvery,
            "early_stop": .earlyStop, "learning_rate": .lr, "shard_optimizer": .shardOptimizer,
            "gradient_precision": .gradientPrecision,
            "kl.beta": .beta, "kl.warmup_steps": .klWarmupSteps, "kl.free_bits": .freeBits,
            "schedule.warmup_steps": .lrWarmupSteps, "schedule.decay": .lrDecay, "schedule.decay_epochs": .lrDecayEpochs,
            "data.test_fraction": .testFraction, "data.channels": .channels, "data.image_size": .imageSize,
            "data.center_crop": .centerCrop, "data.levels": .levels, "data.columns": .columns,
            "data.label_column": .labelColumn, "data.standardization": .standardize, "data.mask": .mask,
            "train_samples": .trainSamples, "shuffle_block": .shuffleBlock, "input_dropout": .inputDropout, "data.heldout_users": .heldoutUsers,
            "data.validation_users": .validationUsers,
            "data.interactions": .interactions, "data.interactions.min_rating": .minRating,
            "architecture.latent_size": .latentDim, "architecture.hidden_size": .hiddenDim,
            "architecture.hidden_sizes": .hiddenDims,
            "architecture.channels": .convChannels, "architecture.likelihood.sigma": .sigma,
            "architecture.likelihood.mixtures": .logisticMixtures, "architecture.likelihood.levels": .levels,
        ]
        guard let option = table[field] else { return nil }
        self = option
    }
}

/// A usage error about one option, thrown from `validate()`.
func invalid(_ option: OptionName, _ detail: String) -> ValidationError {
    ValidationError("\(option) \(detail)")
}

/// Checks that an optional integer option is at least `minimum`.
func require(_ value: Int?, atLeast minimum: Int, _ option: OptionName) throws {
    if let value, value < minimum { throw invalid(option, "must be at least \(minimum) (got \(value))") }
}

/// An option whose value every rank finds wrong once the run's data or
/// checkpoint is known: reported once, every rank exits cleanly.
struct OptionError: Error, CustomStringConvertible {
    let option: OptionName
    let detail: String
    var description: String { "\(option): \(detail)" }
}

func optionError(_ option: OptionName, _ detail: String, _ communicator: Communicator) -> Error {
    CollectiveFailure.unanimous(OptionError(option: option, detail: detail), rank: communicator.rank)
}
