/// A problem writing or reading an artifact (checkpoint, image, log), naming
/// the file and the check that failed.
public enum ArtifactError: Error, CustomStringConvertible, Equatable {
    case io(path: String, operation: String, reason: String)
    case corrupt(path: String, check: String)
    case shapeMismatch(path: String, parameter: String, expected: [Int], found: [Int])
    case missingTensor(path: String, name: String)
    case unexpectedTensor(path: String, name: String)
    case incompatible(path: String, detail: String)
    /// Another process writes to this directory.
    case locked(path: String, holder: String)

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            return "\(path): \(operation) failed: \(reason)"
        case let .corrupt(path, check):
            return "\(path): corrupt or truncated file: \(check)"
        case let .shapeMismatch(path, parameter, expected, found):
            return "\(path): parameter \(parameter) has shape \(found), the model expects \(expected)"
        case let .missingTensor(path, name):
            return "\(path): tensor \(name) is missing"
        case let .unexpectedTensor(path, name):
            return "\(path): tensor \(name) is not a parameter of this model"
        case let .incompatible(path, detail):
            return "\(path): \(detail)"
        case let .locked(path, holder):
            return "\(path) is in use by another run (\(holder)); choose another run directory, or wait for that run to end"
        }
    }
}
