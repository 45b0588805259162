import Foundation
import TensorCore

/// Where a run's images come from, as a value: a dataset directory (IDX or
/// NPY files, see `DatasetDirectory`, or a folder of PNG and JPEG images,
/// see `ImageFolder`), explicit files (which override the directory's),
/// and, when there is no test file, a seeded fraction of the training
/// images held out as the test set. It loads both sets together with the
/// names of their classes.
public struct DataSource: Codable, Equatable, Sendable {
    /// A dataset directory.
    public var directory: String?
    /// Explicit files: with `trainImages` the directory is not read at all;
    /// the others override what the directory holds.
    public var trainImages: String?
    public var testImages: String?
    public var trainLabels: String?
    public var testLabels: String?
    /// Without a test file: the fraction of the training images held out (seeded).
    public var testFraction: Double?
    /// Names of the classes 0…K−1, when the data set says (legends, outputs).
    public var classNames: [String]?
    /// Image folders: the channels to decode to (nil: 1 when every image is
    /// gray, 3 otherwise), the size (H, W) to resize to, the central S×S to
    /// crop first, and whether unreadable images are skipped (and listed)
    /// rather than an error.
    public var channels: Int?
    public var imageSize: [Int]?
    public var centerCrop: Int?
    public var skipBadImages: Bool?
    /// Keep only these classes (labels, or class names) in both sets: a
    /// model of "normal" data, for anomaly scores.
    public var trainClasses: [String]?
    /// Integer samples: their number of levels K (values 0…K−1); uint8
    /// implies 256.
    public var levels: Int?
    /// CSV files: the columns of the samples (default: all but the label
    /// column) and the column of integer labels.
    public var columns: [String]?
    public var labelColumn: String?
    /// Standardize each column (mean 0, standard deviation 1 on the
    /// training set); the statistics, once computed, in `standardization`.
    public var standardize: Bool?
    public var standardization: Standardization?
    /// For vectors (table rows): the names of the D columns, as the data
    /// named them (a CSV header) or by position ("1", "2", …); nil for
    /// images. Found when training and recorded, so that outputs of a
    /// trained model carry the header.
    public var columnNames: [String]?
    /// A file marking the training file's missing values: 0/1 values of its
    /// shape (NPY or CSV), 0 where missing (`--mask`); for an image folder,
    /// a folder of mask images beside it (`MaskFolder`). NaN values are
    /// missing without one.
    public var mask: String?
    /// The data are counts (the likelihood's domain): integer arrays are
    /// read without levels.
    public var counts: Bool?
    /// What the encoder reads of each row of counts (`--input-normalization`).
    public var inputNormalization: InputNormalization?
    /// The training file is an interaction log (`--interactions`), read by
    /// these columns.
    public var interactions: InteractionColumns?
    /// A Matrix Market file's samples are its columns (`--transpose`).
    public var transpose: Bool?
    /// Hold out this many users (rows), seeded, as the test set: Mult-VAE's
    /// held-out users, whose clicks split into fold-in and held-out parts
    /// for ranking metrics (`--heldout-users`).
    public var heldoutUsers: Int?
    /// Hold out this many more users (rows) as the validation set
    /// (`--validation-users`, with `heldoutUsers`): training's evaluations,
    /// `--keep-best` and `--early-stop` use them, and the test users are
    /// left for `recommend --evaluate`, as Mult-VAE selects its model on
    /// validation users and reports test users.
    public var validationUsers: Int?

    /// The test fraction of an image folder without a test folder.
    public static let defaultImageTestFraction = 0.1

    public init(directory: String? = nil, trainImages: String? = nil, testImages: String? = nil,
                trainLabels: String? = nil, testLabels: String? = nil, testFraction: Double? = nil,
                classNames: [String]? = nil) {
        self.directory = directory
        self.trainImages = trainImages
        self.testImages = testImages
        self.trainLabels = trainLabels
        self.testLabels = testLabels
        self.testFraction = testFraction
        self.classNames = classNames
    }

    /// Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it, with
    /// its class names (Xiao et al. 2017).
    public static let debianFashionMNIST = DataSource(
        directory: DatasetDirectory.debianFashionMNIST,
        classNames: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])

    /// This source with its files replaced by another directory's (keeping
    /// the hold-out and, if `keepingClassNames`, the class names).
    public func reading(directory: String, keepingClassNames: Bool = true) -> DataSource {
        var source = DataSource(directory: directory, testFraction: testFraction,
                                classNames: keepingClassNames ? classNames : nil)
        source.channels = channels
        source.imageSize = imageSize
        source.centerCrop = centerCrop
        source.skipBadImages = skipBadImages
        source.trainClasses = trainClasses
        source.levels = levels
        source.columns = columns
        source.labelColumn = labelColumn
        source.standardize = standardize
        source.standardization = standardization
        source.columnNames = columnNames
        source.counts = counts
        source.inputNormalization = inputNormalization
        source.interactions = interactions
        source.transpose = transpose
        source.heldoutUsers = heldoutUsers
        source.validationUsers = validationUsers
        return source
    }

    /// This source with every class (no `trainClasses` filter).
    public var allClasses: DataSource {
        var source = self
        source.trainClasses = nil
        return source
    }

    /// Whether the images come from a folder of PNG and JPEG files.
    public var isImageFolder: Bool {
        trainImages == nil && directory.flatMap { try? DataFormat.of($0) } == .imageFolder
    }

    /// How the files are read.
    public var readOptions: ReadOptions {
        ReadOptions(levels: levels, columns: columns, labelColumn: labelColumn, counts: counts == true,
                    interactions: interactions, transpose: transpose == true)
    }

    /// The files to read: explicit ones first, then the directory's (and its class names).
    func resolvedFiles() throws -> (trainImages: String, testImages: String?, trainLabels: String?, testLabels: String?,
                                    classNames: [String]?) {
        if let trainImages {
            return (trainImages, testImages, trainLabels, testLabels, classNames)
        }
        guard let directory else { throw DataSourceError.noTrainingImages }
        let found = try DatasetDirectory(directory)
        return (found.trainImages, testImages ?? found.testImages, trainLabels ?? found.trainLabels,
                testLabels ?? found.testLabels, classNames ?? found.classNames)
    }

    /// Reads the training and test sets in full. `seed` keys the held-out
    /// fraction. Checks that the two sets agree in image shape.
    public func load(seed: UInt64) throws -> DataSplits {
        let prepared = try prepare(seed: seed)
        let train = try prepared.load(.train)
        let test = try prepared.load(.test)
        return DataSplits(train: train.images, test: test.images, classNames: prepared.classNames,
                          testIsHeldOut: prepared.testIsHeldOut, bad: prepared.bad + train.bad + test.bad)
    }

    /// One split's images (the held-out part when the test set is held out).
    public func load(_ split: DataSplit, seed: UInt64) throws -> ImageSet {
        try prepare(seed: seed).load(split).images
    }

    /// Everything short of the pixels of an image folder: the files, their
    /// headers and labels, the split, the decoding. IDX and NPY files are
    /// read whole here. Every rank does this; each then decodes only the
    /// images it needs (`PreparedData.load`).
    public func prepare(seed: UInt64) throws -> PreparedData {
        let prepared = try prepareAll(seed: seed)
        guard let trainClasses else { return prepared }
        return try prepared.keeping(classes: trainClasses)
    }

    func prepareAll(seed: UInt64) throws -> PreparedData {
        do { try validate() } catch let error as InvalidSetting { throw error.inside("data") }
        try checkImageOptions()
        if isImageFolder, let directory { return try prepareFolder(directory, seed: seed) }
        let files = try resolvedFiles()
        var train = try ImageSet.load(images: files.trainImages, labels: files.trainLabels, options: readOptions)
        if let mask { train = try train.withMask(try ImageSet.loadMask(mask, for: train), source: mask) }
        if let testPath = files.testImages {
            if let testFraction {
                throw DataSourceError.testFractionWithTestFile(testFile: testPath, fraction: testFraction)
            }
            if let heldoutUsers {
                throw DatasetError.incompatible(path: testPath, detail: "--heldout-users \(heldoutUsers) holds out users of "
                                                + "\(files.trainImages) as the test set: give it or a test file, not both")
            }
            var testOptions = readOptions
            // A test log's items are the training log's columns.
            if interactions != nil { testOptions.items = train.columnNames }
            let test = try ImageSet.load(images: testPath, labels: files.testLabels, options: testOptions)
            guard train.shape == test.shape else {
                throw DatasetError.incompatible(
                    path: test.source,
                    detail: "test samples are \(test.shape) but training samples (\(train.source)) are \(train.shape)")
            }
            if train.columnNames != test.columnNames, let names = train.columnNames {
                throw DatasetError.incompatible(
                    path: test.source, detail: "has columns \((test.columnNames ?? []).joined(separator: ", ")), "
                        + "the training file \(train.source) has \(names.joined(separator: ", "))")
            }
            if train.levels != test.levels {
                throw DatasetError.incompatible(
                    path: test.source, detail: "has \(test.levels.map { "\($0) levels" } ?? "real values") but the training "
                        + "file \(train.source) has \(train.levels.map { "\($0) levels" } ?? "real values")")
            }
            let (scaledTrain, scaledTest) = standardized(train, test)
            // Class names name labels: none without them (a data set's names never label another's samples).
            return PreparedData(train: .loaded(scaledTrain), test: .loaded(scaledTest), shape: train.shape,
                                classNames: train.labels == nil ? nil : files.classNames ?? train.labelNames, testIsHeldOut: false)
        }
        if let heldoutUsers {
            if let testFraction {
                throw DatasetError.incompatible(path: files.trainImages, detail: "--heldout-users \(heldoutUsers) and a test "
                                                + "fraction (\(testFraction)) both hold out a test set: give one")
            }
            let held = heldoutUsers + (validationUsers ?? 0)
            guard held < train.count else {
                throw DatasetError.incompatible(path: files.trainImages, detail: "has \(train.count) users (rows): "
                                                + "--heldout-users \(heldoutUsers)"
                                                + (validationUsers.map { " and --validation-users \($0)" } ?? "")
                                                + " would leave none to train on")
            }
            let split = train.holdingOut(fraction: Double(held) / Double(train.count), seed: seed)
            let classNames = train.labels == nil ? nil : train.labelNames
            guard let validationUsers else {
                let (scaledTrain, scaledTest) = standardized(split.train, split.test)
                return PreparedData(train: .loaded(scaledTrain), test: .loaded(scaledTest), shape: train.shape,
                                    classNames: classNames, testIsHeldOut: true)
            }
            // The held-out users, split again (seeded): the validation users and the test users.
            let (test, validation) = Self.splitHeldOut(split.test, validation: validationUsers, seed: seed)
            let (scaledTrain, scaledTest, scaledValidation) = standardized(split.train, test, validation)
            return PreparedData(train: .loaded(scaledTrain), test: .loaded(scaledTest), shape: train.shape,
                                classNames: classNames, testIsHeldOut: true, validation: .loaded(scaledValidation))
        }
        guard let testFraction else { throw DataSourceError.noTestImages(trainFile: files.trainImages) }
        let classNames = train.labels == nil ? nil : files.classNames ?? train.labelNames
        if testFraction == 0 {
            // No test set (every row trains, as imputation protocols do): evaluations use the training set and say so.
            let (scaledTrain, _) = standardized(train, train)
            var test = scaledTrain
            test.isTrainingSet = true
            return PreparedData(train: .loaded(scaledTrain), test: .loaded(test), shape: train.shape,
                                classNames: classNames, testIsHeldOut: false)
        }
        let split = train.holdingOut(fraction: testFraction, seed: seed)
        let (scaledTrain, scaledTest) = standardized(split.train, split.test)
        return PreparedData(train: .loaded(scaledTrain), test: .loaded(scaledTest), shape: train.shape,
                            classNames: classNames, testIsHeldOut: true)
    }

    /// Held-out users as (test users, `validation` validation users), a
    /// seeded split of their own (each part in the set's order).
    static func splitHeldOut(_ held: ImageSet, validation: Int, seed: UInt64) -> (test: ImageSet, validation: ImageSet) {
        let permutation = RandomStream(seed: seed, domain: .dataPermutation, 2).permutation(held.count)
        return (held.selecting(Array(permutation[validation...]).sorted()),
                held.selecting(Array(permutation[..<validation]).sorted()))
    }

    /// With `standardize`, both sets standardized by the training set's
    /// statistics (those recorded in `standardization`, when resuming).
    func standardized(_ train: ImageSet, _ test: ImageSet) -> (ImageSet, ImageSet) {
        let all = standardizing([train, test])
        return (all[0], all[1])
    }

    /// The same with a validation set, by the one fit to the training set.
    func standardized(_ train: ImageSet, _ test: ImageSet, _ validation: ImageSet) -> (ImageSet, ImageSet, ImageSet) {
        let all = standardizing([train, test, validation])
        return (all[0], all[1], all[2])
    }

    /// `sets` (the training set first) with the input normalization and, with
    /// `standardize`, the statistics fit once to the training set.
    private func standardizing(_ sets: [ImageSet]) -> [ImageSet] {
        let statistics = standardize == true ? standardization ?? Standardization(fitting: sets[0]) : nil
        return sets.map { set in
            var set = set
            set.inputNormalization = inputNormalization
            if let statistics { set.standardization = statistics }
            return set
        }
    }

    /// The image-folder options apply to image folders only.
    func checkImageOptions() throws {
        let given = [channels.map { _ in "channels" }, imageSize.map { _ in "image size" },
                     centerCrop.map { _ in "center crop" }, skipBadImages == true ? "skipping bad images" : nil]
            .compactMap { $0 }
        if !given.isEmpty && !isImageFolder {
            throw DataSourceError.imageOptionWithoutImageFolder(option: given[0],
                                                                 data: trainImages ?? directory ?? "the data")
        }
    }

    /// The rules of each value (`InvalidSetting` names the field).
    public func validate() throws {
        if let n = heldoutUsers { try InvalidSetting.check("heldout_users", n, in: 1...100_000_000) }
        if let n = validationUsers {
            try InvalidSetting.check("validation_users", n, in: 1...100_000_000)
            try InvalidSetting.require(heldoutUsers != nil, "validation_users",
                                       "validation users are held out beside the test users of heldout_users: give both")
        }
        if let interactions {
            try InvalidSetting.require(!interactions.user.isEmpty && !interactions.item.isEmpty
                                       && interactions.user != interactions.item, "interactions",
                                       "the user and item columns must be two different names")
            if let r = interactions.minRating { try InvalidSetting.require(r.isFinite, "interactions.min_rating", "must be finite") }
        }
        if let f = testFraction {
            try InvalidSetting.require(f >= 0 && f < 1, "test_fraction",
                                       "must be at least 0 (0: no test set) and below 1 (got \(f))")
        }
        if let c = channels { try InvalidSetting.require(c == 1 || c == 3, "channels", "must be 1 or 3 (got \(c))") }
        if let size = imageSize {
            try InvalidSetting.require(size.count == 2 && size.allSatisfy { (1...16384).contains($0) }, "image_size",
                                       "must be H,W: two integers from 1 to 16384, like 64,64 (got \(size))")
        }
        if let crop = centerCrop { try InvalidSetting.check("center_crop", crop, in: 1...16384) }
        if let levels { try InvalidSetting.check("levels", levels, in: 2...65536) }
        if let columns { try InvalidSetting.require(!columns.isEmpty, "columns", "must name at least one column") }
        if let labelColumn, let columns, columns.contains(labelColumn) {
            throw InvalidSetting("label_column", "\(labelColumn) is also one of the columns of values")
        }
        if let s = standardization {
            try InvalidSetting.require(s.mean.count == s.standardDeviation.count && s.mean.allSatisfy(\.isFinite)
                                       && s.standardDeviation.allSatisfy { $0.isFinite && $0 > 0 },
                                       "standardization", "must hold finite means and positive standard deviations")
        }
    }

    func prepareFolder(_ directory: String, seed: UInt64) throws -> PreparedData {
        if standardize == true { throw DataSourceError.optionNotForImageFolders("standardization", folder: directory) }
        if let mask, !isDirectory(mask) {
            throw DatasetError.incompatible(path: mask, detail: "is not a folder: the masks of an image folder are a "
                                            + "folder of images beside it (masks/a/b.png for \(directory)/a/b.jpg)")
        }
        if testFraction == 0 {
            throw DataSourceError.optionNotForImageFolders("a test fraction of 0 (no test set)", folder: directory)
        }
        if levels != nil { throw DataSourceError.optionNotForImageFolders("levels", folder: directory) }
        let skip = skipBadImages == true
        let folder = try ImageFolder(scanning: directory, skippingBadImages: skip)
        let size = imageSize.map { (height: $0[0], width: $0[1]) }
        var train = folder.train, test: ImageFiles
        var heldOut = false
        if let folderTest = folder.test {
            if let testFraction {
                throw DataSourceError.testFractionWithTestFile(testFile: directory + "/test", fraction: testFraction)
            }
            test = folderTest
        } else {
            guard train.count >= 2 else {
                throw DatasetError.incompatible(path: directory, detail: "holds one image: a test set needs at least one more")
            }
            let (kept, held) = ImageSet.holdOut(count: train.count, fraction: testFraction ?? Self.defaultImageTestFraction,
                                                seed: seed)
            (train, test, heldOut) = (folder.train.selecting(kept), folder.train.selecting(held), true)
        }
        var decoding = try ImageDecoding(for: [train, test], channels: channels, size: size, centerCrop: centerCrop)
        decoding.masks = mask.map { MaskFolder(images: directory, masks: $0) }
        return PreparedData(train: .files(train, decoding), test: .files(test, decoding), shape: decoding.shape,
                            classNames: classNames ?? folder.classNames, testIsHeldOut: heldOut, folder: folder,
                            skippingBad: skip)
    }
}

/// A data source ready to load: its image shape, class names and, per
/// split, either images in memory (IDX, NPY) or image files still to decode.
public struct PreparedData: Sendable {
    public enum Images: Sendable {
        case loaded(ImageSet)
        case files(ImageFiles, ImageDecoding)

        public var count: Int {
            switch self {
            case .loaded(let set): return set.count
            case .files(let files, _): return files.count
            }
        }

        public var labels: [Int32]? {
            switch self {
            case .loaded(let set): return set.labels
            case .files(let files, _): return files.labels
            }
        }
    }

    public let train: Images
    public let test: Images
    public let shape: ImageShape
    /// The standardization of loaded sets (`--standardize`), to record in the configuration.
    public var standardization: Standardization? {
        if case .loaded(let set) = train { return set.standardization }
        return nil
    }
    public let classNames: [String]?
    public let testIsHeldOut: Bool
    /// Validation users held out beside the test users (`validationUsers`).
    public let validation: Images?
    /// The scanned folder, for image folders.
    public let folder: ImageFolder?
    public let skippingBad: Bool

    /// K as the unfiltered data has it (a class filter keeps the labels' meaning).
    let classCountOverride: Int?

    public init(train: Images, test: Images, shape: ImageShape, classNames: [String]?, testIsHeldOut: Bool,
                folder: ImageFolder? = nil, skippingBad: Bool = false, classCountOverride: Int? = nil,
                validation: Images? = nil) {
        self.classCountOverride = classCountOverride
        self.train = train
        self.test = test
        self.validation = validation
        self.shape = shape
        self.classNames = classNames
        self.testIsHeldOut = testIsHeldOut
        self.folder = folder
        self.skippingBad = skippingBad
    }

    public func images(_ split: DataSplit) -> Images { split == .test ? test : train }

    /// For training: the validation users, when there are any, in the place
    /// of the test set (each evaluation scores them; the test users stay unseen).
    public var evaluatingOnValidation: PreparedData {
        guard let validation else { return self }
        return PreparedData(train: train, test: validation, shape: shape, classNames: classNames, testIsHeldOut: testIsHeldOut,
                            folder: folder, skippingBad: skippingBad, classCountOverride: classCountOverride)
    }

    /// The column names of vectors (see `DataSource.columnNames`); nil for images.
    public var columnNames: [String]? {
        guard case .loaded(let set) = train, !set.isImages else { return nil }
        return set.columnNames ?? (1...set.shape.size).map(String.init)
    }

    /// What a likelihood is told about the training data (image folders:
    /// 8-bit images are 256 levels, 16-bit ones real values in [0, 1]).
    public var description: DataDescription {
        switch train {
        case .loaded(let set): return set.description
        case .files(_, let decoding):
            return DataDescription(source: source(.train), levels: decoding.sixteenBit ? nil : 256, range: 0...1,
                                   storage: decoding.sixteenBit ? "16-bit images" : "8-bit images")
        }
    }

    /// Images whose headers could not be read (skipped while scanning).
    public var bad: [BadImage] { folder?.bad ?? [] }

    /// Where a split's images come from, for messages.
    public func source(_ split: DataSplit) -> String {
        switch images(split) {
        case .loaded(let set): return set.source
        case .files:
            guard let folder else { return "" }
            if folder.layout == .splits { return folder.path + "/" + split.rawValue }
            return folder.path
        }
    }

    /// Decodes a split, or the images of it at `indices` (in that order).
    /// Files that fail are an error, or skipped and listed when skipping
    /// bad images.
    public func load(_ split: DataSplit, indices: [Int]? = nil) throws -> (images: ImageSet, bad: [BadImage]) {
        switch images(split) {
        case .loaded(let set):
            return (indices.map(set.selecting) ?? set, [])
        case let .files(files, decoding):
            return try decoding.decode(indices.map(files.selecting) ?? files, skippingBad: skippingBad,
                                       source: source(split))
        }
    }

    /// The same data with only the images of `classes` (labels, or class
    /// names) in both sets.
    public func keeping(classes: [String]) throws -> PreparedData {
        guard let trainLabels = train.labels else {
            throw DataSourceError.classesWithoutLabels(source: source(.train))
        }
        var kept = Set<Int32>()
        for token in classes {
            if let label = Int32(token) {
                kept.insert(label)
            } else if let index = classNames?.firstIndex(of: token) {
                kept.insert(Int32(index))
            } else {
                throw DataSourceError.unknownClass(token, known: classNames ?? [], source: source(.train))
            }
        }
        for label in kept.sorted() where !trainLabels.contains(label) {
            throw DataSourceError.unknownClass(String(label), known: classNames ?? [], source: source(.train))
        }
        func filtered(_ images: Images, _ split: DataSplit) throws -> Images {
            guard let labels = images.labels else { throw DataSourceError.classesWithoutLabels(source: source(split)) }
            let indices = labels.indices.filter { kept.contains(labels[$0]) }
            switch images {
            case .loaded(let set): return .loaded(set.selecting(indices))
            case let .files(files, decoding): return .files(files.selecting(indices), decoding)
            }
        }
        let test = try filtered(self.test, .test)
        guard test.count > 0 else {
            throw DatasetError.incompatible(path: source(.test), detail: "has no test images of classes \(classes.joined(separator: ", "))")
        }
        return PreparedData(train: try filtered(train, .train), test: test, shape: shape, classNames: classNames,
                            testIsHeldOut: testIsHeldOut, folder: folder, skippingBad: skippingBad,
                            classCountOverride: classCount, validation: validation)
    }

    /// K for a conditional model: the number of class names, else one more
    /// than the largest training label; nil without labels.
    public var classCount: Int? {
        if let classCountOverride { return classCountOverride }
        guard let labels = train.labels else { return nil }
        if let classNames { return classNames.count }
        return Int(labels.max() ?? 0) + 1
    }

    /// What scanning found that the user should hear about, once.
    public var notes: [String] {
        guard let folder else { return [] }
        var notes: [String] = []
        if !folder.otherFiles.isEmpty {
            let example = (folder.otherFiles[0] as NSString).lastPathComponent
            notes.append("skipped \(folder.otherFiles.count) file\(folder.otherFiles.count == 1 ? "" : "s") that "
                         + "\(folder.otherFiles.count == 1 ? "is" : "are") not .png, .jpg or .jpeg (e.g. \(example))")
        }
        return notes
    }
}

/// Which part of a data set.
public enum DataSplit: String, CaseIterable, Codable, Sendable {
    case test
    case train
}

/// A data source's training and test sets.
public struct DataSplits: Sendable {
    public var train: ImageSet
    public var test: ImageSet
    public var classNames: [String]?
    /// Whether the test set was held out of the training file.
    public var testIsHeldOut: Bool
    /// Images skipped as unreadable (when skipping bad images).
    public var bad: [BadImage]

    public init(train: ImageSet, test: ImageSet, classNames: [String]? = nil, testIsHeldOut: Bool = false,
                bad: [BadImage] = []) {
        self.train = train
        self.test = test
        self.classNames = classNames
        self.testIsHeldOut = testIsHeldOut
        self.bad = bad
    }
}

/// A data source that does not describe a usable pair of training and test sets.
public enum DataSourceError: Error, CustomStringConvertible, Equatable {
    case noTrainingImages
    case noTestImages(trainFile: String)
    case testFractionWithTestFile(testFile: String, fraction: Double)
    case imageOptionWithoutImageFolder(option: String, data: String)
    case classesWithoutLabels(source: String)
    /// An option of arrays and tables given for a folder of images.
    case optionNotForImageFolders(String, folder: String)
    case unknownClass(String, known: [String], source: String)

    public var description: String {
        switch self {
        case .noTrainingImages:
            return "no training images: name a dataset directory or a training file"
        case let .noTestImages(trainFile):
            return "no test images for \(trainFile): name a test file, put one beside it, "
                + "or hold out a fraction of the training set"
        case let .testFractionWithTestFile(testFile, fraction):
            return "there is a test file (\(testFile)); a test fraction (\(fraction)) holds out a test set only when there is none"
        case let .imageOptionWithoutImageFolder(option, data):
            return "\(option) applies to folders of PNG and JPEG images; \(data) is not one"
        case let .optionNotForImageFolders(option, folder):
            return "\(option) applies to arrays and tables; \(folder) is a folder of images (8-bit images have 256 levels)"
        case let .classesWithoutLabels(source):
            return "\(source) has no labels to choose classes by"
        case let .unknownClass(name, known, source):
            return "\(source) has no class \(name)" + (known.isEmpty ? "" : " (its classes: "
                + known.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ") + ")")
        }
    }
}
