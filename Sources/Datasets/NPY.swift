import Foundation
import TensorCore

/// NumPy's `.npy` format (numpy.lib.format, versions 1.0, 2.0 and 3.0): the
/// magic `\x93NUMPY`, two version bytes, a little-endian header length
/// (UInt16 in 1.0, UInt32 after), a Python dict literal with `descr`,
/// `fortran_order` and `shape`, then the data in C order. Reads unsigned
/// bytes, float32 and float64 (narrowed to float32), and the other integer
/// types (samples with their levels, labels), either byte order. Files may be gzipped.
public struct NPYArray: Equatable {
    public enum Elements: Equatable {
        case bytes([UInt8])
        case floats([Float])
        case integers([Int64])
    }

    public var shape: [Int]
    public var elements: Elements
    /// NumPy's descr of the file's elements ("<i4", "|u1", …), for messages.
    public var dtype: String

    public static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// True if `data` starts like an .npy file.
    public static func looksLikeNPY(_ data: [UInt8]) -> Bool {
        data.count >= 6 && Array(data[0..<6]) == magic
    }

    public init(contentsOf path: String) throws {
        try self.init(parsing: try readPossiblyCompressedFile(path), path: path)
    }

    /// What an .npy header says: the shape, the descr, its kind ("u", "i",
    /// "f") and size, the byte order, where the data start, and how many
    /// elements there are.
    struct Header {
        var shape: [Int]
        var descr: String
        var kind: Character
        var size: Int
        var bigEndian: Bool
        var start: Int
        var count: Int
    }

    /// Parses the header at the start of `data` (at least the header's
    /// bytes) of a file of `totalBytes` bytes, and checks the data's size.
    static func header(_ data: [UInt8], totalBytes: Int, path: String) throws -> Header {
        func bad(_ detail: String) -> DatasetError { .badDimensions(path: path, detail: detail) }
        guard Self.looksLikeNPY(data), data.count >= 10 else {
            throw DatasetError.incompatible(path: path, detail: "not an .npy file (no \\x93NUMPY magic)")
        }
        let major = data[6]
        let headerStart = major == 1 ? 10 : 12
        guard major >= 1 && major <= 3, data.count >= headerStart else {
            throw DatasetError.incompatible(path: path, detail: "unsupported .npy version \(major).\(data[7])")
        }
        let headerLength = major == 1 ? Int(data[8]) | Int(data[9]) << 8
            : Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        guard data.count >= headerStart + headerLength else {
            throw DatasetError.truncated(path: path, expectedBytes: headerStart + headerLength, foundBytes: data.count)
        }
        let header = String(decoding: data[headerStart ..< headerStart + headerLength], as: UTF8.self)
        guard let descr = Self.stringValue(of: "descr", in: header) else { throw bad("header lacks 'descr': \(header)") }
        guard let fortran = Self.rawValue(of: "fortran_order", in: header) else { throw bad("header lacks 'fortran_order'") }
        guard fortran.hasPrefix("False") else {
            throw DatasetError.incompatible(path: path, detail: "Fortran-order arrays are not supported; save np.ascontiguousarray(a)")
        }
        guard let shapeText = Self.rawValue(of: "shape", in: header), shapeText.hasPrefix("("),
              let close = shapeText.firstIndex(of: ")")
        else { throw bad("header lacks 'shape': \(header)") }
        let dims = shapeText[shapeText.index(after: shapeText.startIndex) ..< close]
            .split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for d in dims {
            guard let v = Int(d), v >= 0 else { throw bad("shape \(shapeText[...close])") }
            shape.append(v)
        }
        guard let count = checkedProduct(shape) else {
            throw bad("shape \(shapeText[...close]) holds more elements than this machine can address")
        }

        // descr: byte order (<, >, |, =) then kind and size, e.g. '<f4', '|u1'.
        var code = Substring(descr)
        var bigEndian = false
        if let first = code.first, "<>|=".contains(first) {
            bigEndian = first == ">"
            code = code.dropFirst()
        }
        // The dtype first: a valid file of another dtype is "not supported", not "damaged".
        let supported: Set<String> = ["u1", "f4", "f8", "i1", "i2", "i4", "i8", "u2", "u4", "u8"]
        guard supported.contains(String(code)), let kind = code.first, let size = Int(code.dropFirst()) else {
            throw DatasetError.incompatible(
                path: path, detail: "dtype '\(descr)' is not supported (samples: uint8, other integers with their levels, float32 or float64; labels: integers)")
        }
        let start = headerStart + headerLength
        guard let expected = checkedOffset(start, plus: count, times: size) else {
            throw bad("shape \(shapeText[...close]) of '\(descr)' needs more bytes than this machine can address")
        }
        if totalBytes < expected { throw DatasetError.truncated(path: path, expectedBytes: expected, foundBytes: totalBytes) }
        if totalBytes > expected { throw DatasetError.trailingBytes(path: path, expectedBytes: expected, foundBytes: totalBytes) }
        return Header(shape: shape, descr: descr, kind: kind, size: size, bigEndian: bigEndian, start: start, count: count)
    }

    public init(parsing data: [UInt8], path: String) throws {
        let h = try Self.header(data, totalBytes: data.count, path: path)
        let (shape, descr, kind, size, bigEndian, start, count) = (h.shape, h.descr, h.kind, h.size, h.bigEndian, h.start, h.count)
        func word<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
            data.withUnsafeBytes { raw in
                let v = raw.loadUnaligned(fromByteOffset: start + i * MemoryLayout<T>.size, as: T.self)
                return bigEndian ? T(bigEndian: v) : T(littleEndian: v)
            }
        }
        switch (kind, size) {
        case ("u", 1):
            elements = .bytes(Array(data[start...]))
        case ("f", 4):
            elements = .floats((0..<count).map { Float(bitPattern: word($0, UInt32.self)) })
        case ("f", 8):
            elements = .floats((0..<count).map { Float(Double(bitPattern: word($0, UInt64.self))) })
        case ("i", 1), ("i", 2), ("i", 4), ("i", 8), ("u", 2), ("u", 4), ("u", 8):
            let values: [Int64] = (0..<count).map { i in
                switch (kind, size) {
                case ("i", 1): return Int64(Int8(bitPattern: data[start + i]))
                case ("i", 2): return Int64(Int16(bitPattern: word(i, UInt16.self)))
                case ("i", 4): return Int64(Int32(bitPattern: word(i, UInt32.self)))
                case ("u", 2): return Int64(word(i, UInt16.self))
                case ("u", 4): return Int64(word(i, UInt32.self))
                default: return Int64(bitPattern: word(i, UInt64.self))
                }
            }
            elements = .integers(values)
        default:
            throw DatasetError.incompatible(
                path: path, detail: "dtype '\(descr)' is not supported (samples: uint8, other integers with their levels, float32 or float64; labels: integers)")
        }
        self.shape = shape
        dtype = descr
    }

    static func rawValue(of key: String, in header: String) -> Substring? {
        guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else { return nil }
        var rest = header[keyRange.upperBound...].drop { $0 == " " }
        guard rest.first == ":" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " }
        return rest
    }

    static func stringValue(of key: String, in header: String) -> String? {
        guard let rest = rawValue(of: key, in: header), let quote = rest.first, quote == "'" || quote == "\"" else { return nil }
        let body = rest.dropFirst()
        guard let end = body.firstIndex(of: quote) else { return nil }
        return String(body[..<end])
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
