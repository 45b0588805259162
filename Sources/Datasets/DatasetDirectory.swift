import Foundation
/// The files of a dataset directory. Either the MNIST family's IDX names
/// (Debian's `dataset-fashion-mnist` installs /usr/share/datasets/fashion-mnist):
/// `train-images-idx3-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, and when
/// present `train-labels-idx1-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`;
/// or NumPy files: `train-images.npy`, `test-images.npy`, `train-labels.npy`,
/// `test-labels.npy` (each also as `.npy.gz`). The test images are optional
/// here (a run can hold out part of the training set instead).
public struct DatasetDirectory: Equatable, Sendable {
    public static let debianFashionMNIST = "/usr/share/datasets/fashion-mnist"
    /// The names of a training file that make a folder a dataset directory.
    public static let trainingFileNames = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                           "train-images.npy", "train-images.npy.gz"]

    public let path: String
    public let trainImages: String
    public let testImages: String?
    public let trainLabels: String?
    public let testLabels: String?
    /// The names of classes 0…K−1 from classes.txt (one per line), if there is one.
    public let classNames: [String]?

    /// Finds the files in `path`, preferring the uncompressed name when both exist.
    public init(_ path: String) throws {
        self.path = path
        guard fileExists(path) else {
            let hint = path == Self.debianFashionMNIST
                ? "install it with `apt-get install dataset-fashion-mnist`, or name another dataset directory"
                : "a dataset directory holds train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz], "
                    + "or train-images.npy and test-images.npy"
            throw DatasetError.notFound(path: path, hint: hint)
        }
        func find(_ stems: [String]) -> String? {
            for stem in stems {
                for candidate in ["\(path)/\(stem)", "\(path)/\(stem).gz"] where fileExists(candidate) {
                    return candidate
                }
            }
            return nil
        }
        guard let train = find(["train-images-idx3-ubyte", "train-images.npy"]) else {
            throw DatasetError.notFound(
                path: "\(path)/train-images-idx3-ubyte[.gz]",
                hint: "the dataset directory must hold train-images-idx3-ubyte[.gz] or train-images.npy[.gz]")
        }
        trainImages = train
        testImages = find(["t10k-images-idx3-ubyte", "test-images.npy"])
        trainLabels = find(["train-labels-idx1-ubyte", "train-labels.npy"])
        testLabels = find(["t10k-labels-idx1-ubyte", "test-labels.npy"])
        classNames = (try? String(contentsOfFile: "\(path)/classes.txt", encoding: .utf8))
            .map { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
            .map { $0.last == "" ? Array($0.dropLast()) : $0 }
    }
}
