import ArgumentParser
import Collectives
import CSystem
import Datasets
import Foundation
import TensorCore
import Training
import VAEModel

extension Precision: ExpressibleByArgument {}
extension KernelLibrary: ExpressibleByArgument {}
extension ExactReduction: ExpressibleByArgument {}
extension Activation: ExpressibleByArgument {}
extension MissingFill: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}
extension InputNormalization: ExpressibleByArgument {}
extension Dispersion: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (the default subcommand).",
        discussion: """
            With no options: the PyTorch example's VAE (784-400-20, Bernoulli likelihood, \
            Adam lr 1e-3, global batch 128, 10 epochs, seed 1) on Fashion-MNIST from \
            Debian's dataset-fashion-mnist. Rank 0 writes config.json, metrics.jsonl, \
            TensorBoard events, sample and reconstruction grids and checkpoints into the \
            run directory.

            \(OptionName.resume) continues a run from a checkpoint (a run directory resumes from its \
            latest one). Options given with it override the checkpoint's configuration, \
            except those that fix the model, the batches or the random streams \
            (\(Train.fixedOnResume.map(\.description).joined(separator: ", "))). \
            With the same number of ranks the result is bit-identical to an uninterrupted \
            run; with another number it continues from the next epoch boundary.
            """)

    /// The options a resumed run must leave as the checkpoint has them.
    static let fixedOnResume: [OptionName] = [.model, .likelihood, .sigma, .logisticMixtures, .levels, .columns,
                                          .labelColumn, .standardize, .hiddenDim, .hiddenDims, .activation, .latentDim,
                                          .convChannels,
                                          .conditional, .encoderCondition, .missingFill, .mask, .trainSamples, .batchSize, .seed,
                                          .interactions, .userColumn, .itemColumn, .ratingColumn, .minRating, .transpose,
                                          .heldoutUsers, .validationUsers, .inputNormalization, .inputDropout, .shuffleBlock, .dispersion,
                                          .reproducible, .microShards, .exactReduction]

    @Option(name: OptionName.data.name, help: ArgumentHelp(
        "Dataset directory: train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz], or train-images.npy and test-images.npy, labels optional; or a folder of PNG and JPEG images: DIR/train and DIR/test, DIR/<class>/…, or flat (default: \(DatasetDirectory.debianFashionMNIST)).",
        valueName: "dir"))
    var data: String?

    @OptionGroup var images: ImageFolderOptions

    @Option(name: OptionName.trainClasses.name, help: ArgumentHelp(
        "Keep only these classes (labels or class names) in the training and test sets: a model of normal data, for vae-mpi score.",
        valueName: "a,b,…"))
    var trainClasses: String?

    @Option(name: OptionName.trainFile.name, help: ArgumentHelp(
        "Training samples: IDX (N×H×W, N×C×H×W), .npy (uint8, other integers with \(OptionName.levels), float32 or float64; N×H×W, N×C×H×W or N×D), an HDF5 dataset (FILE.h5:/path), CSV (a table, rows are samples) or Matrix Market (.mtx, sparse counts), raw or .gz. Uncompressed .npy, IDX and contiguous HDF5 are memory-mapped. Overrides \(OptionName.data).",
        valueName: "file"))
    var trainFile: String?

    @Option(name: OptionName.levels.name, help: ArgumentHelp(
        "Integer samples have K levels 0…K−1 (uint8 implies 256; other integer .npy arrays need it; 2 for 0/1 data). Discrete likelihoods model the levels.",
        valueName: "K"))
    var levels: Int?

    @Option(name: OptionName.columns.name, help: ArgumentHelp(
        "CSV: the columns of the samples, by header name (or 1-based position without a header), in order (default: all but \(OptionName.labelColumn)).",
        valueName: "a,b,…"))
    var columns: String?

    @Option(name: OptionName.labelColumn.name, help: ArgumentHelp("CSV: the column of integer labels.", valueName: "name"))
    var labelColumn: String?

    @Flag(name: OptionName.standardize.name, inversion: .prefixedNo,
          help: "Standardize each column to mean 0 and standard deviation 1 with the training set's statistics (kept in the checkpoint; encode, reconstruct and sample write the original units) (default: off).")
    var standardize: Bool?

    @Option(name: OptionName.testFile.name, help: ArgumentHelp("Test images, in the same formats.", valueName: "file"))
    var testFile: String?

    @Option(name: OptionName.trainLabels.name, help: ArgumentHelp(
        "Labels of the training images (IDX or .npy integers, or FILE.csv:COLUMN, a column of a table as with \(OptionName.covariate)).",
        valueName: "file"))
    var trainLabels: String?

    @Option(name: OptionName.covariate.name, help: ArgumentHelp(
        "A per-sample covariate (a cell's batch, a user's group) that conditions the model, as scVI's batch does: column COLUMN of a CSV table, its values the categories (in sorted order), its rows matched to the samples by name (a column holding every barcode or user id) or else one per sample in order. Implies \(OptionName.conditional); the test file's samples are looked up in the same table.",
        valueName: "file.csv:column"))
    var covariate: String?

    @Flag(name: OptionName.encoderCondition.name, inversion: .prefixedNo, help: ArgumentHelp(
        "A conditional model (\(OptionName.conditional), \(OptionName.covariate)): whether the encoder reads the label too, or the decoder only (--no-encoder-condition: scVI's default for a batch; the mlp family) (default: on)."))
    var encoderCondition: Bool?

    @Option(name: OptionName.testLabels.name, help: ArgumentHelp("Labels of the test images.", valueName: "file"))
    var testLabels: String?

    @Option(name: OptionName.testFraction.name, help: ArgumentHelp(
        "Without a test file: hold out this fraction of the training images (seeded) as the test set; 0: no test set (every sample trains, and evaluations report the training set).", valueName: "f"))
    var testFraction: Double?

    @Option(name: OptionName.mask.name, help: ArgumentHelp(
        "Missing values: for a training file, a .npy or .csv of its shape, 1 observed, 0 missing; for a folder of images, a folder of masks beside it (masks/a/b.png for DIR/a/b.jpg, its dark pixels missing). Empty, NA and NaN cells of a CSV and NaN in float .npy are missing without it.",
        valueName: "file|dir"))
    var mask: String?

    @Option(name: OptionName.interactions.name, help: ArgumentHelp(
        "Training data: an interaction log (CSV with a header, one line per user and item, raw or .gz); a row per user, a column per item, ids kept (instead of \(OptionName.trainFile)).",
        valueName: "file.csv"))
    var interactions: String?

    @Option(name: OptionName.userColumn.name, help: "\(OptionName.interactions): the column of user ids (default: user).")
    var userColumn: String?

    @Option(name: OptionName.itemColumn.name, help: "\(OptionName.interactions): the column of item ids (default: item).")
    var itemColumn: String?

    @Option(name: OptionName.ratingColumn.name, help: "\(OptionName.interactions): a column of ratings (default: none, each line one interaction).")
    var ratingColumn: String?

    @Option(name: OptionName.minRating.name, help: ArgumentHelp(
        "\(OptionName.interactions): ratings at or above R are clicks (value 1), others dropped (Mult-VAE on MovieLens: 4, i.e. above 3.5).",
        valueName: "R"))
    var minRating: Double?

    @Flag(name: OptionName.transpose.name, help: "A Matrix Market (.mtx) training file's samples are its columns (10x Genomics: genes × cells).")
    var transpose = false

    @Option(name: OptionName.heldoutUsers.name, help: ArgumentHelp(
        "Hold out N users (rows), seeded, as the test set; vae-mpi recommend --evaluate ranks their held-out clicks (Mult-VAE's protocol).",
        valueName: "N"))
    var heldoutUsers: Int?

    @Option(name: OptionName.validationUsers.name, help: ArgumentHelp(
        "With \(OptionName.heldoutUsers): hold out N more users (seeded) as the validation set, on which training evaluates (loss and ranking metrics), and by which \(OptionName.keepBest) and \(OptionName.earlyStop) choose; the test users are then left for vae-mpi recommend --evaluate (Mult-VAE's validation and test users).",
        valueName: "N"))
    var validationUsers: Int?

    @Option(name: OptionName.inputNormalization.name, help: ArgumentHelp(
        "What the encoder reads of a row of counts: l2 (x/‖x‖, Mult-VAE) or log1p (log(1 + x), scVI) (default: the counts).",
        valueName: "l2|log1p"))
    var inputNormalization: InputNormalization?

    @Option(name: OptionName.inputDropout.name, help: ArgumentHelp(
        "Dropout on the encoder's input in training: each value zeroed with probability p, the rest scaled by 1/(1 − p) (Mult-VAE: 0.5) (default: 0).",
        valueName: "p"))
    var inputDropout: Double?

    @Option(name: OptionName.dispersion.name, help: ArgumentHelp(
        "\(OptionName.likelihood) negative-binomial: the dispersion θ per feature (one learned value per gene, scVI's default), per feature and covariate category (feature-covariate: one per gene and batch, scVI's gene-batch; with \(OptionName.covariate)), or per feature and sample (from the decoder) (default: feature-sample).",
        valueName: "feature|feature-sample"))
    var dispersion: Dispersion?

    @Option(name: OptionName.missingFill.name, help: ArgumentHelp(
        "What the encoder reads where a value is missing: zero, or learned constants (default: zero).",
        valueName: "zero|learned"))
    var missingFill: MissingFill?

    @Option(name: OptionName.trainSamples.name, help: ArgumentHelp(
        "Draws K from q per sample in training: 1 trains the ELBO; K > 1 the importance-weighted bound (IWAE; with missing values, MIWAE), with β = 1 (default: 1).",
        valueName: "K"))
    var trainSamples: Int?

    @Option(name: OptionName.model.name, help: ArgumentHelp(
        "Architecture: mlp (PyTorch's example VAE) or conv (one stride-2 convolution per \(OptionName.convChannels) entry; H and W divisible by 2^stages) (default: mlp).",
        valueName: Architecture.familyNames.joined(separator: "|")))
    var model: String?

    @Option(name: OptionName.likelihood.name, help: ArgumentHelp(
        "p(x | z): " + Likelihood.components.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ") + " (default: bernoulli).",
        valueName: Likelihood.names.joined(separator: "|")))
    var likelihood: String?

    @Option(name: OptionName.sigma.name, help: "σ of \(OptionName.likelihood) gaussian (default: 1).")
    var sigma: Double?

    @Option(name: OptionName.logisticMixtures.name, help: ArgumentHelp(
        "Components N of \(OptionName.likelihood) discretized-logistic (default: 1).", valueName: "n"))
    var logisticMixtures: Int?

    @Option(name: OptionName.convChannels.name, help: ArgumentHelp(
        "Channels of the conv model's stride-2 convolutions, one stage each, mirrored by the decoder (default: 32,64; e.g. 32,64,128,256 for 64×64 images).",
        valueName: "c1,c2,…"))
    var convChannels: String?

    @Flag(name: OptionName.conditional.name,
          help: "Conditional VAE (Sohn et al. 2015): the one-hot label enters the encoder and, beside z, the decoder. Needs labelled data.")
    var conditional = false

    @Option(name: OptionName.klWarmupSteps.name, help: "Ramp the KL weight linearly from 0 to β over this many steps (default: 0, no ramp).")
    var klWarmupSteps: Int?

    @Option(name: OptionName.freeBits.name, help: ArgumentHelp(
        "Free bits λ: each latent dimension's KL (global batch mean) counts as at least λ nats (Kingma et al. 2016) (default: 0).",
        valueName: "nats"))
    var freeBits: Double?

    @Option(name: OptionName.epochs.name, help: "Passes over the training set (default: 10).")
    var epochs: Int?

    @Option(name: OptionName.batchSize.name, help: "Global batch size: samples per step summed over all ranks (default: 128).")
    var batchSize: Int?

    @Option(name: OptionName.lr.name, help: ArgumentHelp("Adam learning rate (default: 0.001).", valueName: "lr"))
    var learningRate: Double?

    @Option(name: OptionName.lrSchedule.name, help: "Learning rate over the run: constant, cosine (to 0 over --epochs), or step (× \(OptionName.lrDecay) after each of \(OptionName.lrDecayEpochs)) (default: constant).")
    var lrSchedule: LearningRateSchedule.Kind?

    @Option(name: OptionName.lrWarmupSteps.name, help: "Ramp the learning rate linearly from 0 over the first N steps (Goyal et al. 2017, for large global batches) (default: 0).")
    var lrWarmupSteps: Int?

    @Option(name: OptionName.lrDecayEpochs.name, help: ArgumentHelp("\(OptionName.lrSchedule) step: the epochs after which the rate drops.", valueName: "e1,e2,…"))
    var lrDecayEpochs: String?

    @Option(name: OptionName.lrDecay.name, help: ArgumentHelp("\(OptionName.lrSchedule) step: the factor γ of each drop (default: 0.1).", valueName: "γ"))
    var lrDecay: Double?

    @Option(name: OptionName.accumulate.name, help: ArgumentHelp(
        "Gradient accumulation: each optimizer step takes K micro-batches on every rank (one reduction per step); \(OptionName.batchSize) stays the global batch of a step (default: 1).",
        valueName: "k"))
    var accumulate: Int?

    @Option(name: OptionName.latentDim.name, help: ArgumentHelp("Latent dimensions Z (default: 20; conv: 16).", valueName: "z"))
    var latentDim: Int?

    @Option(name: OptionName.hiddenDim.name, help: ArgumentHelp("Hidden units H of the MLP (default: 400).", valueName: "h"))
    var hiddenDim: Int?

    @Option(name: OptionName.hiddenDims.name, help: ArgumentHelp(
        "The MLP's hidden layers H1,…,Hn: the encoder D → H1 → … → Hn, the decoder mirrored (instead of \(OptionName.hiddenDim)).",
        valueName: "h1,h2,…"))
    var hiddenDims: String?

    @Option(name: OptionName.activation.name, help: "The MLP's activation: relu or tanh (default: relu).")
    var activation: Activation?

    @Option(name: OptionName.beta.name, help: "Weight β of the KL term; 1 is the ELBO (default: 1).")
    var beta: Double?

    @Option(name: OptionName.seed.name, help: "Seed of every random number: initialisation, shuffles, noise (default: 1).")
    var seed: UInt64?

    @Option(name: OptionName.runDir.name, help: ArgumentHelp(
        "Directory for this run's outputs (default: runs/<UTC timestamp>; when resuming, the checkpoint's run).",
        valueName: "dir"))
    var runDirectory: String?

    @Option(name: OptionName.maxSteps.name, help: "Stop after this many steps in total, evaluating and checkpointing there.")
    var maxSteps: Int?

    @Option(name: OptionName.logEvery.name, help: "Log training metrics every this many steps (default: 50).")
    var logEvery: Int?

    @Flag(name: OptionName.verifyReplicas.name, inversion: .prefixedNo,
          help: "Check at each epoch end and at the end that every rank holds identical parameters (default: off).")
    var verifyReplicas: Bool?

    @Option(name: OptionName.threads.name, help: "Kernel threads per rank; ranks are the parallelism (default: 1).")
    var threads: Int?

    @Option(name: OptionName.shuffleBlock.name, help: ArgumentHelp(
        "Shuffle blocks of B consecutive samples, and samples within windows of \(ShardPlan.shuffleWindow) blocks, instead of single samples: reads stay sequential, for data larger than memory (a mapped .npy, IDX or HDF5 file), with read-ahead (default: a full shuffle).",
        valueName: "B"))
    var shuffleBlock: Int?

    @Flag(name: OptionName.allowSharedCores.name,
          help: "Run even when \(OptionName.threads) exceeds the cores a rank's affinity allows (by default refused, with the mpirun options that fix it).")
    var allowSharedCores = false

    @Option(name: OptionName.precision.name, help: "Inputs of matrix products and convolutions: fp32, or bf16 with fp32 accumulation (needs AVX512_BF16 or AMX); parameters, gradients, optimizer and checkpoints stay fp32 (default: fp32).")
    var precision: Precision?

    @Option(name: OptionName.kernels.name, help: "Kernel library: onednn, or openblas (fp32 only, im2col convolutions) (default: onednn).")
    var kernels: KernelLibrary?

    @Option(name: OptionName.gradientPrecision.name, help: "Number format of the gradients the ranks exchange: fp32, or bf16 (half the bytes; each rank's sum and the total rounded to bf16) for slow networks (default: fp32).")
    var gradientPrecision: Precision?

    @Flag(name: OptionName.shardOptimizer.name, inversion: .prefixedNo,
          help: "Shard Adam over the ranks (ZeRO stage 1): reduce-scatter the gradients, update 1/np of the parameters each, allgather them (default: off).")
    var shardOptimizer: Bool?

    @Flag(name: OptionName.reproducible.name, inversion: .prefixedNo,
          help: "Results independent of the number of ranks: global batches in --micro-shards fixed pieces, noise keyed by image, exact sums; every np that divides the micro-shards gives the same bytes, and a run resumes exactly at another np (default: off).")
    var reproducible: Bool?

    @Option(name: OptionName.microShards.name, help: ArgumentHelp("With --reproducible: the fixed pieces of each global batch; the numbers of ranks that give the same results are its divisors (default: 8).", valueName: "v"))
    var microShards: Int?

    @Option(name: OptionName.exactReduction.name, help: "With --reproducible: how the micro-shards' gradients are added exactly: tree (a fixed binary tree; micro-shards and np powers of two; the faster) or fixed-point (64-bit integers; any np dividing the micro-shards) (default: tree).")
    var exactReduction: ExactReduction?

    @Option(name: OptionName.checkpointEvery.name, help: "Checkpoint every this many steps, and at the end (default: at each epoch end).")
    var checkpointEvery: Int?

    @Option(name: OptionName.keepCheckpoints.name, help: "How many of the newest checkpoints to keep (default: 3).")
    var keepCheckpoints: Int?

    @Flag(name: OptionName.keepBest.name, inversion: .prefixedNo,
          help: "Keep the checkpoint with the lowest test loss as checkpoints/best (never pruned) (default: off).")
    var keepBest: Bool?

    @Option(name: OptionName.earlyStop.name, help: ArgumentHelp("Stop after N evaluations (epoch ends) without a lower test loss.", valueName: "n"))
    var earlyStop: Int?

    @Option(name: OptionName.evalBatchSize.name, help: "Test images per forward pass during evaluation (default: 500).")
    var evaluationBatchSize: Int?

    @Option(name: OptionName.resume.name, help: ArgumentHelp("Continue from a checkpoint: a run directory, a .safetensors file or its .json sidecar.",
                                                         valueName: "checkpoint"))
    var resume: String?

    @Option(name: OptionName.collectiveTimeout.name, help: ArgumentHelp(
        "Stall watchdog: a rank that waits this long in one collective prints its rank, host, step and phase, and the job ends with status 4 (0: off) (default: 600).",
        valueName: "seconds"))
    var collectiveTimeout: Double = 600

    @Flag(name: OptionName.profile.name, help: "Print the per-step time breakdown (forward+backward with its GEMM share, allreduce, optimizer, other) at the end.")
    var profile = false

    /// Parses, and checks what only options can get wrong (their syntax and
    /// combinations); every value's rule is its component's, applied to the
    /// configuration these options make (`TrainingConfiguration.validate`).
    func validate() throws {
        if (microShards != nil || exactReduction != nil) && reproducible != true && resume == nil {
            throw invalid(microShards != nil ? .microShards : .exactReduction, "applies with \(OptionName.reproducible)")
        }
        if !(collectiveTimeout.isFinite && collectiveTimeout >= 0) {
            throw invalid(.collectiveTimeout, "must be a number of seconds ≥ 0 (got \(collectiveTimeout))")
        }
        if lrDecayEpochs != nil && lrSchedule != .step && lrSchedule != nil {
            throw invalid(.lrDecayEpochs, "applies to \(OptionName.lrSchedule) step")
        }
        if let runDirectory, runDirectory.isEmpty { throw invalid(.runDir, "must not be empty") }
        if let data, data.isEmpty { throw invalid(.data, "must not be empty") }
        if let model, Architecture.defaults(family: model) == nil {
            throw invalid(.model, "must be one of \(Architecture.familyNames.joined(separator: ", ")) (got \(model))")
        }
        if resume == nil {
            // A new run: the configuration these options make must obey every rule.
            var configuration = TrainingConfiguration()
            do {
                try configure(&configuration, resuming: nil)
                try configuration.validate()
            } catch let error as OptionError {
                throw ValidationError("\(error)")
            } catch {
                throw ValidationError(Messages.text(for: error))
            }
        }
    }

    /// "30,60" → [30, 60]; the rules of the values are the schedule's.
    func parsedDecayEpochs() throws -> [Int]? {
        try lrDecayEpochs.map { try Self.integers($0, .lrDecayEpochs, example: "30,60") }
    }

    /// "32,64,128" → [32, 64, 128]; the rules of the values are the architecture's.
    func parsedConvChannels() throws -> [Int]? {
        try convChannels.map { try Self.integers($0, .convChannels, example: "32,64,128") }
    }

    /// "a, b,c" → ["a", "b", "c"].
    static func names(_ text: String) -> [String] {
        text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    static func integers(_ text: String, _ option: OptionName, example: String) throws -> [Int] {
        let parts = names(text).map { Int($0) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw OptionError(option: option, detail: "must be a comma-separated list of integers, like \(example) (got \(text))")
        }
        return parts.map { $0! }
    }

    /// Applies the options given to `c`: the defaults of a new run, or the
    /// configuration of the checkpoint `resuming` continues, where the
    /// options of `fixedOnResume` may not change anything. Only maps: the
    /// rules of the values are the configuration's (`validate()`).
    func configure(_ c: inout TrainingConfiguration, resuming checkpoint: Checkpoint?) throws {
        func refuse(_ option: OptionName, _ checkpoint: Checkpoint) -> OptionError {
            OptionError(option: option, detail: "cannot change when resuming: it fixes the model, the batches or the random "
                        + "streams of the run in \(checkpoint.path)")
        }
        func set<Value: Equatable>(_ value: Value?, _ option: OptionName, _ target: inout Value) throws {
            guard let value else { return }
            if let checkpoint, Self.fixedOnResume.contains(option), value != target { throw refuse(option, checkpoint) }
            target = value
        }
        func set<Value: Equatable>(_ value: Value?, _ option: OptionName, _ target: inout Value?) throws {
            guard let value else { return }
            if let checkpoint, Self.fixedOnResume.contains(option), value != target { throw refuse(option, checkpoint) }
            target = value
        }
        // Data.
        if let data, data != c.data.directory {
            c.data.directory = data
            c.data.classNames = data == DataSource.debianFashionMNIST.directory
                ? DataSource.debianFashionMNIST.classNames : nil
        }
        if let trainFile {
            // The files are the data now: the default directory's class names do not name their labels.
            if data == nil && c.data.trainImages != trainFile && c.data.directory == DataSource.debianFashionMNIST.directory {
                c.data.classNames = nil
            }
            c.data.trainImages = trainFile
        }
        if let interactions {
            if let trainFile { throw OptionError(option: .interactions, detail: "is the training data; give it or \(OptionName.trainFile) (\(trainFile)), not both") }
            if data == nil && c.data.trainImages != interactions { c.data.classNames = nil }
            c.data.trainImages = interactions
        }
        var log = c.data.interactions
        if interactions != nil && log == nil { log = InteractionColumns() }
        if log != nil {
            if let userColumn { log!.user = userColumn }
            if let itemColumn { log!.item = itemColumn }
            if let ratingColumn { log!.rating = ratingColumn }
            if let minRating { log!.minRating = minRating }
        } else if let option = [(userColumn != nil, OptionName.userColumn), (itemColumn != nil, .itemColumn),
                                (ratingColumn != nil, .ratingColumn), (minRating != nil, .minRating)].first(where: \.0)?.1 {
            throw OptionError(option: option, detail: "applies to an interaction log (\(OptionName.interactions))")
        }
        if let checkpoint, log != c.data.interactions { throw refuse(.interactions, checkpoint) }
        c.data.interactions = log
        if transpose {
            if let checkpoint, c.data.transpose != true { throw refuse(.transpose, checkpoint) }
            c.data.transpose = true
        }
        try set(heldoutUsers, .heldoutUsers, &c.data.heldoutUsers)
        try set(validationUsers, .validationUsers, &c.data.validationUsers)
        try set(inputNormalization, .inputNormalization, &c.data.inputNormalization)
        try set(inputDropout, .inputDropout, &c.inputDropout)
        if let testFile { c.data.testImages = testFile }
        if let trainLabels { c.data.trainLabels = trainLabels }
        if let testLabels { c.data.testLabels = testLabels }
        if let covariate {
            guard LabelTable.Spec(covariate) != nil else {
                throw OptionError(option: .covariate, detail: "\"\(covariate)\" is not FILE.csv:COLUMN (a column of a CSV table)")
            }
            if trainLabels != nil {
                throw OptionError(option: .covariate, detail: "labels the training samples, as \(OptionName.trainLabels) does: give one")
            }
            if let checkpoint, c.architecture.conditionalClasses == 0 {
                throw OptionError(option: .covariate, detail: "cannot change when resuming: the model in \(checkpoint.path) is unconditional")
            }
            c.data.trainLabels = covariate
            if c.data.testImages != nil && testLabels == nil { c.data.testLabels = covariate }
        }
        if let testFraction { c.data.testFraction = testFraction }
        try set(levels, .levels, &c.data.levels)
        try set(mask, .mask, &c.data.mask)
        try set(columns.map(Self.names), .columns, &c.data.columns)
        try set(labelColumn, .labelColumn, &c.data.labelColumn)
        if let standardize, standardize != (c.data.standardize == true) {
            if let checkpoint { throw refuse(.standardize, checkpoint) }
            c.data.standardize = standardize ? true : nil
            c.data.standardization = nil
        }
        try images.apply(to: &c.data)
        if let trainClasses {
            let names = Self.names(trainClasses).filter { !$0.isEmpty }
            guard !names.isEmpty else { throw OptionError(option: .trainClasses, detail: "names no class") }
            c.data.trainClasses = names
        }
        if let checkpoint, conditional, c.architecture.conditionalClasses == 0 {
            throw OptionError(option: .conditional, detail: "cannot change when resuming: the model in \(checkpoint.path) is unconditional")
        }
        // Architecture: a family's defaults, then its options.
        var family = c.architecture.family
        try set(model, .model, &family)
        if family != c.architecture.family, let defaults = Architecture.defaults(family: family) {
            c.architecture = defaults
        }
        try set(latentDim, .latentDim, &c.architecture.latentSize)
        switch c.architecture {
        case .mlp(var options):
            if hiddenDim != nil && hiddenDims != nil {
                throw OptionError(option: .hiddenDims, detail: "names the hidden layers; give it or \(OptionName.hiddenDim), not both")
            }
            // Not through `set(_:_:&options.hiddenSize)`: an inout computed property is written back even
            // when unchanged, and writing H1 makes one hidden layer.
            if let hiddenDim {
                if let checkpoint, options.hiddenSizes != [hiddenDim] { throw refuse(.hiddenDim, checkpoint) }
                options.hiddenSize = hiddenDim
            }
            try set(try hiddenDims.map { try Self.integers($0, .hiddenDims, example: "600,200") }, .hiddenDims, &options.hiddenSizes)
            try set(activation, .activation, &options.activation)
            c.architecture = .mlp(options)
        case .conv(var options):
            try set(try parsedConvChannels(), .convChannels, &options.channels)
            c.architecture = .conv(options)
        }
        if let encoderCondition {
            if let checkpoint, encoderCondition != c.architecture.conditionEncoder { throw refuse(.encoderCondition, checkpoint) }
            if !encoderCondition && c.architecture.family != "mlp" {
                throw OptionError(option: .encoderCondition, detail: "the \(c.architecture.family) family conditions its encoder; "
                                  + "--no-encoder-condition applies to the mlp family")
            }
            if !encoderCondition && !conditional && covariate == nil && c.architecture.conditionalClasses == 0 {
                throw OptionError(option: .encoderCondition, detail: "applies to a conditional model (\(OptionName.conditional) "
                                  + "or \(OptionName.covariate))")
            }
            c.architecture.conditionEncoder = encoderCondition
        }
        if let dispersion {
            let perFeature = dispersion == .feature, perCovariate = dispersion == .featureCovariate
            if let checkpoint, perFeature != c.architecture.featureDispersion || perCovariate != c.architecture.covariateDispersion {
                throw refuse(.dispersion, checkpoint)
            }
            if (perFeature || perCovariate) && c.architecture.family != "mlp" {
                throw OptionError(option: .dispersion, detail: "\(dispersion.rawValue) applies to the mlp family (not \(c.architecture.family))")
            }
            c.architecture.featureDispersion = perFeature
            c.architecture.covariateDispersion = perCovariate
        }
        var fill = c.architecture.missingFill
        try set(missingFill, .missingFill, &fill)
        c.architecture.missingFill = fill
        // The likelihood: by its name (default: the current one's) with the settings given.
        let settings = LikelihoodSettings(sigma: sigma, mixtures: logisticMixtures)
        if likelihood != nil || !settings.given.isEmpty {
            let current = c.architecture.likelihood
            let named: Likelihood
            do {
                named = try Likelihood(named: likelihood ?? current.name, settings: settings)
            } catch let LikelihoodError.unknown(name, known) {
                throw OptionError(option: .likelihood, detail: "must be one of \(known.joined(separator: ", ")) (got \(name))")
            } catch let LikelihoodError.settingNotApplicable(setting, name, takenBy) {
                let option: OptionName = setting == .sigma ? .sigma : .logisticMixtures
                throw OptionError(option: option, detail: "applies to \(OptionName.likelihood) \(takenBy.joined(separator: " or ")), "
                                  + "not to \(name)")
            } catch let error as InvalidSetting {
                throw OptionError(option: OptionName(field: "architecture.likelihood." + error.field) ?? .likelihood,
                                  detail: error.detail)
            }
            if let checkpoint {
                // The checkpoint's likelihood knows its data's levels; compare with those.
                let given = named.resolved(for: DataDescription(source: "", levels: current.levels, range: 0...1, storage: ""))
                if given != current { throw refuse(likelihood != nil ? .likelihood : settings.given[0] == .sigma ? .sigma : .logisticMixtures, checkpoint) }
            } else {
                c.architecture.likelihood = named
            }
        }
        // Count likelihoods read integer arrays as counts (no levels).
        c.data.counts = c.architecture.likelihood.domain == .counts ? true : nil
        // Objective, optimizer, schedule, outputs.
        var samples = c.samplesPerImage
        try set(trainSamples, .trainSamples, &samples)
        c.trainSamples = samples == 1 ? nil : samples
        try set(beta, .beta, &c.kl.beta)
        try set(klWarmupSteps, .klWarmupSteps, &c.kl.warmupSteps)
        try set(freeBits, .freeBits, &c.kl.freeBits)
        try set(learningRate, .lr, &c.learningRate)
        try set(lrSchedule, .lrSchedule, &c.schedule.kind)
        try set(lrWarmupSteps, .lrWarmupSteps, &c.schedule.warmupSteps)
        try set(try parsedDecayEpochs(), .lrDecayEpochs, &c.schedule.decayEpochs)
        try set(lrDecay, .lrDecay, &c.schedule.decay)
        try set(accumulate, .accumulate, &c.accumulate)
        try set(keepBest, .keepBest, &c.keepBest)
        if let earlyStop { c.earlyStop = earlyStop }
        try set(epochs, .epochs, &c.epochs)
        try set(batchSize, .batchSize, &c.batchSize)
        try set(seed, .seed, &c.seed)
        try set(runDirectory, .runDir, &c.runDirectory)
        if let maxSteps { c.maxSteps = maxSteps }
        try set(logEvery, .logEvery, &c.logEvery)
        try set(verifyReplicas, .verifyReplicas, &c.verifyReplicas)
        try set(threads, .threads, &c.threads)
        if allowSharedCores { c.allowSharedCores = true }
        try set(shuffleBlock, .shuffleBlock, &c.shuffleBlock)
        try set(precision, .precision, &c.precision)
        try set(kernels, .kernels, &c.kernels)
        try set(shardOptimizer, .shardOptimizer, &c.shardOptimizer)
        try set(gradientPrecision, .gradientPrecision, &c.gradientPrecision)
        try set(reproducible, .reproducible, &c.reproducible)
        try set(microShards, .microShards, &c.microShards)
        try set(exactReduction, .exactReduction, &c.exactReduction)
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        try set(keepCheckpoints, .keepCheckpoints, &c.keepCheckpoints)
        try set(evaluationBatchSize, .evalBatchSize, &c.evaluationBatchSize)
    }

    func run() throws {
        let options = self
        Execution.collectiveTimeout = collectiveTimeout
        Execution.run { communicator in
            let checkpoint = try options.resume.map { try Checkpoint.load($0, communicator: communicator) }
            var configuration = checkpoint.map(TrainingConfiguration.init(resuming:)) ?? TrainingConfiguration()
            do {
                try options.configure(&configuration, resuming: checkpoint)
            } catch {
                throw CollectiveFailure.unanimous(error, rank: communicator.rank)
            }
            BLAS.setThreads(configuration.threads)
            var session = TrainingSession(configuration: configuration, resumingFrom: checkpoint,
                                          communicator: communicator, profile: options.profile, faults: .fromEnvironment,
                                          conditional: options.conditional || options.covariate != nil)
            // SIGTERM and SIGINT stop training at the next step, with a checkpoint (rank 0 announces it).
            vm_install_stop_handlers(communicator.rank == 0 ? 1 : 0)
            session.stopRequested = { vm_stop_signal() != 0 }
            try session.run()
        }
    }
}

extension FaultInjection {
    /// The test hooks: VAE_MPI_FAIL_AT=rank:step makes that rank fail there
    /// (the abort path); VAE_MPI_DIVERGE_AT=rank:step nudges one of its
    /// parameters (the replica check); VAE_MPI_NAN_GRADIENT_AT=rank:step puts
    /// a NaN in its gradient, in the last rank's slice (the non-finite check).
    static var fromEnvironment: FaultInjection {
        func rankAndStep(_ variable: String) -> (rank: Int, step: Int)? {
            guard let value = ProcessInfo.processInfo.environment[variable] else { return nil }
            let parts = value.split(separator: ":").compactMap { Int($0) }
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
        var stall: (rank: Int, step: Int, phase: CollectiveWatchdog.Phase)? = nil
        if let value = ProcessInfo.processInfo.environment["VAE_MPI_STALL_AT"] {
            let parts = value.split(separator: ":")
            if parts.count == 3, let r = Int(parts[0]), let s = Int(parts[1]),
               let phase = CollectiveWatchdog.Phase(rawValue: String(parts[2])) {
                stall = (r, s, phase)
            }
        }
        return FaultInjection(failure: rankAndStep("VAE_MPI_FAIL_AT"), divergence: rankAndStep("VAE_MPI_DIVERGE_AT"),
                              stall: stall, stopRequest: rankAndStep("VAE_MPI_SIGNAL_AT"),
                              nonFiniteGradient: rankAndStep("VAE_MPI_NAN_GRADIENT_AT"))
    }
}
