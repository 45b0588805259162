/// A problem with a dataset file or directory, always naming the path and
/// what was expected, so the user can fix it.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String, hint: String)
    case unreadable(path: String, reason: String)
    case badMagic(path: String, found: [UInt8])
    case unsupportedElementType(path: String, code: UInt8)
    case badDimensions(path: String, detail: String)
    case truncated(path: String, expectedBytes: Int, foundBytes: Int)
    case trailingBytes(path: String, expectedBytes: Int, foundBytes: Int)
    case countMismatch(images: String, imageCount: Int, labels: String, labelCount: Int)
    case incompatible(path: String, detail: String)
    /// A CSV file's line (1-based) and column (1-based position, and name when known).
    case csv(path: String, line: Int, column: String?, detail: String)
    /// An integer outside the levels 0…K−1 the data was said to have.
    case levelOutOfRange(path: String, index: Int, value: Int64, levels: Int)
    /// Integer samples of a type that does not imply its levels (anything
    /// but uint8), without the number of levels.
    case integersNeedLevels(path: String, dtype: String)

    public var description: String {
        switch self {
        case let .notFound(path, hint):
            return "\(path): no such file\(hint.isEmpty ? "" : " (\(hint))")"
        case let .unreadable(path, reason):
            return "\(path): cannot read: \(reason)"
        case let .badMagic(path, found):
            let hex = found.map { String($0, radix: 16, uppercase: false) }.map { $0.count < 2 ? "0" + $0 : $0 }
            return "\(path): not an IDX file: magic bytes \(hex.joined(separator: " ")), expected 00 00 <type> <rank>"
        case let .unsupportedElementType(path, code):
            return "\(path): IDX element type 0x\(String(code, radix: 16)) is not supported (expected 0x08, unsigned byte)"
        case let .badDimensions(path, detail):
            return "\(path): bad dimensions: \(detail)"
        case let .truncated(path, expected, found):
            return "\(path): truncated: header promises \(expected) bytes, file has \(found)"
        case let .trailingBytes(path, expected, found):
            return "\(path): \(found - expected) unexpected bytes after the \(expected) the header describes"
        case let .countMismatch(images, imageCount, labels, labelCount):
            return "\(labels) has \(labelCount) labels but \(images) has \(imageCount) images"
        case let .incompatible(path, detail):
            return "\(path): \(detail)"
        case let .csv(path, line, column, detail):
            return "\(path), line \(line)" + (column.map { ", column \($0)" } ?? "") + ": \(detail)"
        case let .levelOutOfRange(path, index, value, levels):
            return "\(path): value \(value) at index \(index) is outside the \(levels) levels 0…\(levels - 1)"
        case let .integersNeedLevels(path, dtype):
            return "\(path): integer samples (\(dtype)) need their number of levels K (values 0…K−1); "
                + "only uint8 implies 256"
        }
    }
}
