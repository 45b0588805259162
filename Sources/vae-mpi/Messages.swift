import Collectives
import Datasets
import TensorCore
import Training
import VAEModel

/// The words a user of the command line reads for an error. The libraries'
/// messages name no options; where the fix is an option, this says which,
/// choosing by the error's type and fields, never by its text.
enum Messages {
    static func text(for error: Error) -> String {
        switch error {
        case let failure as CollectiveFailure:
            return failure.describe(text(for:))
        case let error as InvalidSetting:
            // A rule of a component: under the option that sets the field, when one does.
            if let option = OptionName(field: error.field) { return "\(option) \(error.detail)" }
            return "\(error)"
        case TrainingError.batchSmallerThanRanks:
            return "\(OptionName.batchSize): \(error)"
        case let TrainingError.unsupportedImages(_, family, _, requirement):
            switch requirement {
            case .sidesDivisible:
                return "\(OptionName.model) \(family): \(error) (resize the images with \(OptionName.imageSize), "
                    + "or use fewer \(OptionName.convChannels) stages)"
            case .images:
                return "\(OptionName.model) \(family): \(error) (use \(OptionName.model) mlp for rows of a table)"
            case .atLeastOneValue:
                return "\(OptionName.model) \(family): \(error)"
            }
        case let TrainingError.runDirectoryInUse(path):
            return "\(path) already holds a run (config.json); choose another \(OptionName.runDir), "
                + "or continue it with \(OptionName.resume) \(path)"
        case TrainingError.nonFinite(_, _?):
            return "\(error)"
        case let TrainingError.nonFinite(step, nil):
            return "non-finite loss or gradient at step \(step); training stopped on every rank (try a lower \(OptionName.lr))"
        case let DataSourceError.noTestImages(trainFile):
            return "\(OptionName.testFile): no test images for \(trainFile): give \(OptionName.testFile), put a test file "
                + "beside it, or hold out part of the training set with \(OptionName.testFraction) (e.g. 0.1)"
        case let DataSourceError.testFractionWithTestFile(testFile, fraction):
            return "\(OptionName.testFraction): there is a test file (\(testFile)); \(OptionName.testFraction) \(fraction) "
                + "holds out a test set only when there is none"
        case DataSourceError.noTrainingImages:
            return "\(OptionName.data): \(error)"
        case let DataSourceError.imageOptionWithoutImageFolder(option, data):
            let name: OptionName = ["channels": .channels, "image size": .imageSize, "center crop": .centerCrop][option]
                ?? .skipBadImages
            return "\(name) applies to folders of PNG and JPEG images; \(data) is not one"
        case let DataSourceError.optionNotForImageFolders(option, _):
            return "\(option == "levels" ? OptionName.levels : OptionName.standardize): \(error)"
        case DataSourceError.classesWithoutLabels, DataSourceError.unknownClass:
            return "\(OptionName.trainClasses): \(error)"
        case TrainingError.conditionalWithoutLabels:
            return "\(OptionName.conditional): \(error)"
        case DatasetError.integersNeedLevels:
            return "\(error): give it with \(OptionName.levels) K"
        case DatasetError.levelOutOfRange:
            return "\(error) (\(OptionName.levels))"
        case let LikelihoodError.unsuitableData(likelihood, _, _) where Likelihood.components.contains(where: {
            $0.name == likelihood && (try? $0.init(settings: LikelihoodSettings()))?.domain == .levels
        }):
            return "\(OptionName.likelihood) \(likelihood): \(error); integer arrays need \(OptionName.levels) K"
        case let LikelihoodError.unsuitableData(likelihood, _, _):
            return "\(OptionName.likelihood) \(likelihood): \(error)"
        default:
            return "\(error)"
        }
    }
}
