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

    /// Reads an MNIST-family directory and checks that the two sets agree.
    public static func load(directory: String) throws -> LoadedData {
        let files = try DatasetDirectory(directory)
        let train = try ImageSet.loadIDX(images: files.trainImages, labels: files.trainLabels)
        let test = try ImageSet.loadIDX(images: files.testImages, labels: files.testLabels)
        guard train.shape == test.shape else {
            throw DatasetError.incompatible(
                path: files.testImages,
                detail: "test images are \(test.shape) but training images (\(files.trainImages)) are \(train.shape)")
        }
        return LoadedData(train: train, test: test)
    }
}
