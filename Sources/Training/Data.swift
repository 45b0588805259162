import Datasets

/// The training and test sets, as read from disk (every rank reads them;
/// each keeps only its shard).
public struct LoadedData: Sendable {
    public var train: ImageSet
    public var test: ImageSet

    public init(train: ImageSet, test: ImageSet) {
        self.train = train
        self.test = test
    }

    /// Reads the data a configuration names: `--train-file`/`--test-file`
    /// (and label files) when given, else the files found in `--data`; a
    /// test set held out of the training set with `--test-fraction` when
    /// there is no test file. Checks that the two sets agree in shape.
    public static func load(_ c: TrainingConfiguration) throws -> LoadedData {
        var trainImages = c.trainFile, testImages = c.testFile
        var trainLabels = c.trainLabels, testLabels = c.testLabels
        if trainImages == nil {
            let files = try DatasetDirectory(c.data)
            trainImages = files.trainImages
            testImages = testImages ?? files.testImages
            trainLabels = trainLabels ?? files.trainLabels
            testLabels = testLabels ?? files.testLabels
        }
        guard let trainPath = trainImages else { throw DatasetError.notFound(path: c.data, hint: "") }
        let train = try ImageSet.load(images: trainPath, labels: trainLabels)
        let test: ImageSet
        if let testPath = testImages {
            if let fraction = c.testFraction {
                throw TrainingError.invalidOption(
                    option: "--test-fraction",
                    detail: "there is a test file (\(testPath)); --test-fraction \(fraction) holds out a test set only when there is none")
            }
            test = try ImageSet.load(images: testPath, labels: testLabels)
        } else if let fraction = c.testFraction {
            let split = train.holdingOut(fraction: fraction, seed: c.seed)
            return LoadedData(train: split.train, test: split.test)
        } else {
            throw TrainingError.invalidOption(
                option: "--test-file",
                detail: "no test images for \(trainPath): give --test-file, put a test file beside it, "
                    + "or hold out part of the training set with --test-fraction (e.g. 0.1)")
        }
        guard train.shape == test.shape else {
            throw DatasetError.incompatible(
                path: test.source, detail: "test images are \(test.shape) but training images (\(train.source)) are \(train.shape)")
        }
        return LoadedData(train: train, test: test)
    }

    /// Checks both sets against what the model needs (see `ImageSet.validate(for:)`).
    public func validate(for spec: ModelSpec) throws {
        try train.validate(for: spec)
        try test.validate(for: spec)
    }
}

extension ImageSet {
    /// Checks the images against what the model needs: its image shape,
    /// finite values, [0, 1] for a Bernoulli likelihood, and H and W
    /// divisible by 4 for the conv model. Errors name the file.
    public func validate(for spec: ModelSpec) throws {
        guard shape == spec.image else {
            throw DatasetError.incompatible(path: source, detail: "images are \(shape) but the model takes \(spec.image)")
        }
        try validateValues(
            unitInterval: spec.likelihood == .bernoulli,
            requirement: "the Bernoulli likelihood needs values in [0, 1] "
                + "(use --likelihood gaussian or gaussian-learned, or scale the data)")
        if spec.kind == .conv && (shape.height % 4 != 0 || shape.width % 4 != 0) {
            throw TrainingError.invalidOption(
                option: "--model conv",
                detail: "the conv VAE needs image height and width divisible by 4; \(source) has \(shape) images")
        }
    }
}
