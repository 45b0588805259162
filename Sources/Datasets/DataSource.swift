/// Where a run's images come from, as a value: a dataset directory (IDX or
/// NPY files, see `DatasetDirectory`), explicit files (which override the
/// directory's), and, when there is no test file, a seeded fraction of the
/// training images held out as the test set. It loads both sets together
/// with the names of their classes.
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
        DataSource(directory: directory, testFraction: testFraction, classNames: keepingClassNames ? classNames : nil)
    }

    /// The files to read: explicit ones first, then the directory's.
    func resolvedFiles() throws -> (trainImages: String, testImages: String?, trainLabels: String?, testLabels: String?) {
        if let trainImages {
            return (trainImages, testImages, trainLabels, testLabels)
        }
        guard let directory else { throw DataSourceError.noTrainingImages }
        let found = try DatasetDirectory(directory)
        return (found.trainImages, testImages ?? found.testImages, trainLabels ?? found.trainLabels,
                testLabels ?? found.testLabels)
    }

    /// Reads the training and test sets. `seed` keys the held-out fraction.
    /// Checks that the two sets agree in image shape.
    public func load(seed: UInt64) throws -> DataSplits {
        let files = try resolvedFiles()
        let train = try ImageSet.load(images: files.trainImages, labels: files.trainLabels)
        if let testPath = files.testImages {
            if let testFraction {
                throw DataSourceError.testFractionWithTestFile(testFile: testPath, fraction: testFraction)
            }
            let test = try ImageSet.load(images: testPath, labels: files.testLabels)
            guard train.shape == test.shape else {
                throw DatasetError.incompatible(
                    path: test.source,
                    detail: "test images are \(test.shape) but training images (\(train.source)) are \(train.shape)")
            }
            return DataSplits(train: train, test: test, classNames: classNames, testIsHeldOut: false)
        }
        guard let testFraction else { throw DataSourceError.noTestImages(trainFile: files.trainImages) }
        let split = train.holdingOut(fraction: testFraction, seed: seed)
        return DataSplits(train: split.train, test: split.test, classNames: classNames, testIsHeldOut: true)
    }

    /// One split's images (the held-out part when the test set is held out).
    public func load(_ split: DataSplit, seed: UInt64) throws -> ImageSet {
        let splits = try load(seed: seed)
        return split == .test ? splits.test : splits.train
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

    public init(train: ImageSet, test: ImageSet, classNames: [String]? = nil, testIsHeldOut: Bool = false) {
        self.train = train
        self.test = test
        self.classNames = classNames
        self.testIsHeldOut = testIsHeldOut
    }
}

/// A data source that does not describe a usable pair of training and test sets.
public enum DataSourceError: Error, CustomStringConvertible, Equatable {
    case noTrainingImages
    case noTestImages(trainFile: String)
    case testFractionWithTestFile(testFile: String, fraction: Double)

    public var description: String {
        switch self {
        case .noTrainingImages:
            return "no training images: name a dataset directory or a training file"
        case let .noTestImages(trainFile):
            return "no test images for \(trainFile): name a test file, put one beside it, "
                + "or hold out a fraction of the training set"
        case let .testFractionWithTestFile(testFile, fraction):
            return "there is a test file (\(testFile)); a test fraction (\(fraction)) holds out a test set only when there is none"
        }
    }
}
