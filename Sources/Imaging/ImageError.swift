/// A problem decoding or encoding an image, naming the file (or `<memory>`)
/// and what failed.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    case corrupt(path: String, detail: String)
    case codec(operation: String, reason: String)

    public var description: String {
        switch self {
        case let .corrupt(path, detail): return "\(path): corrupt or truncated image: \(detail)"
        case let .codec(operation, reason): return "\(operation) failed: \(reason)"
        }
    }
}
