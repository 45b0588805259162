/// The files of an MNIST-family dataset directory (Debian's
/// `dataset-fashion-mnist` installs /usr/share/datasets/fashion-mnist):
/// `train-images-idx3-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]` and, when
/// present, the matching `*-labels-idx1-ubyte[.gz]`.
public struct DatasetDirectory: Equatable, Sendable {
    public static let debianFashionMNIST = "/usr/share/datasets/fashion-mnist"

    public let path: String
    public let trainImages: String
    public let testImages: String
    public let trainLabels: String?
    public let testLabels: String?

    /// Finds the files in `path`, preferring the uncompressed name when both exist.
    public init(_ path: String) throws {
        self.path = path
        guard fileExists(path) else {
            let hint = path == Self.debianFashionMNIST
                ? "install it with `apt-get install dataset-fashion-mnist`, or pass --data DIR"
                : "pass --data DIR with train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]"
            throw DatasetError.notFound(path: path, hint: hint)
        }
        func find(_ stem: String, required: Bool) throws -> String? {
            for candidate in ["\(path)/\(stem)", "\(path)/\(stem).gz"] where fileExists(candidate) {
                return candidate
            }
            if required {
                throw DatasetError.notFound(path: "\(path)/\(stem)[.gz]",
                                            hint: "the dataset directory must hold \(stem) or \(stem).gz")
            }
            return nil
        }
        trainImages = try find("train-images-idx3-ubyte", required: true)!
        testImages = try find("t10k-images-idx3-ubyte", required: true)!
        trainLabels = try find("train-labels-idx1-ubyte", required: false)
        testLabels = try find("t10k-labels-idx1-ubyte", required: false)
    }
}
