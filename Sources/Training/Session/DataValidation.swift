import Datasets
import TensorCore
import VAEModel

extension ImageSet {
    /// Checks the samples against what the model needs: its sample shape,
    /// every value present and finite, the likelihood's data (values in
    /// [0, 1], integer levels, …), images for a family that models images
    /// only, and what the family requires of the image size. Errors name the
    /// file and the rule.
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        guard shape == image else {
            throw DatasetError.incompatible(path: source, detail: "samples are \(shape) but the model takes \(image)")
        }
        if architecture.needsImages && !isImages {
            throw TrainingError.unsupportedImages(source: source, family: architecture.family, image: shape,
                                                  requirement: .images)
        }
        try validateFinite()
        try architecture.likelihood.check(description)
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

extension PreparedData {
    /// Both sets, when loaded whole (arrays and tables), checked against the
    /// model before they are sharded, so that every rank finds the same
    /// problem and names the sample by its place in the file. (Image folders
    /// are decoded by shard, and each shard is checked when decoded.)
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        for split in [DataSplit.train, .test] {
            if case .loaded(let set) = images(split) { try set.validate(for: architecture, image: image) }
        }
    }
}

extension ShardedData {
    /// This rank's shard and the test set checked against the model (see
    /// `ImageSet.validate(for:image:)`); the shape first, which every rank
    /// sees the same even when its shard is empty.
    public func validate(for architecture: Architecture, image: ImageShape) throws {
        guard shape == image else {
            throw DatasetError.incompatible(path: trainSource, detail: "samples are \(shape) but the model takes \(image)")
        }
        try shard.validate(for: architecture, image: image)
        try test.validate(for: architecture, image: image)
    }
}
