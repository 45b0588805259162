import Datasets
import TensorCore
import VAEModel

extension ImageSet {
    /// Checks the images against what the model needs: its image shape,
    /// finite values, [0, 1] for a Bernoulli likelihood, and what the
    /// architecture's family requires of the image size. Errors name the file.
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        guard shape == image else {
            throw DatasetError.incompatible(path: source, detail: "images are \(shape) but the model takes \(image)")
        }
        try validateValues(
            unitInterval: architecture.likelihood.needsUnitInterval,
            requirement: "the Bernoulli likelihood needs values in [0, 1] "
                + "(use a Gaussian likelihood, or scale the data)")
        do {
            try architecture.validate(for: shape)
        } catch let ArchitectureError.unsupportedImage(family, image, requirement) {
            throw TrainingError.unsupportedImages(source: source, family: family, image: image, requirement: requirement)
        }
    }
}

extension DataSplits {
    /// Both sets checked against the model (see `ImageSet.validate(for:image:)`).
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        try train.validate(for: architecture, image: image)
        try test.validate(for: architecture, image: image)
    }
}

extension ShardedData {
    /// This rank's shard and the test set checked against the model (see
    /// `ImageSet.validate(for:image:)`); the shape first, which every rank
    /// sees the same even when its shard is empty.
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        guard shape == image else {
            throw DatasetError.incompatible(path: trainSource, detail: "images are \(shape) but the model takes \(image)")
        }
        try shard.validate(for: architecture, image: image)
        try test.validate(for: architecture, image: image)
    }
}
