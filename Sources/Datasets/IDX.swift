/// The IDX format of MNIST and its relatives (LeCun et al.): a 4-byte magic
/// `00 00 <type> <rank>`, `rank` big-endian UInt32 dimensions, then the
/// elements row-major. Files may be gzipped. Only unsigned bytes (type 0x08),
/// the type of every image and label file in that family, are read.
public struct IDXArray: Equatable {
    public var dimensions: [Int]
    public var bytes: [UInt8]

    /// Parses `data`, which came from `path` (used in error messages).
    public init(parsing data: [UInt8], path: String) throws {
        guard data.count >= 4 else {
            throw DatasetError.truncated(path: path, expectedBytes: 4, foundBytes: data.count)
        }
        guard data[0] == 0, data[1] == 0 else {
            throw DatasetError.badMagic(path: path, found: Array(data[0..<4]))
        }
        guard data[2] == 0x08 else { throw DatasetError.unsupportedElementType(path: path, code: data[2]) }
        let rank = Int(data[3])
        guard rank >= 1 else { throw DatasetError.badDimensions(path: path, detail: "rank 0") }
        let headerSize = 4 + 4 * rank
        guard data.count >= headerSize else {
            throw DatasetError.truncated(path: path, expectedBytes: headerSize, foundBytes: data.count)
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<rank {
            let o = 4 + 4 * d
            let value = Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3])
            dims.append(value)
            let (product, overflow) = total.multipliedReportingOverflow(by: value)
            guard !overflow, product <= 1 << 40 else {
                throw DatasetError.badDimensions(path: path, detail: "\(dims) is implausibly large")
            }
            total = product
        }
        let expected = headerSize + total
        if data.count < expected {
            throw DatasetError.truncated(path: path, expectedBytes: expected, foundBytes: data.count)
        }
        if data.count > expected {
            throw DatasetError.trailingBytes(path: path, expectedBytes: expected, foundBytes: data.count)
        }
        dimensions = dims
        bytes = Array(data[headerSize...])
    }

    /// Reads and parses an IDX file (raw or gzip).
    public init(contentsOf path: String) throws {
        try self.init(parsing: try readPossiblyCompressedFile(path), path: path)
    }

    /// Serializes to IDX bytes (used by tests and tools to write datasets).
    public static func encode(dimensions: [Int], bytes: [UInt8]) -> [UInt8] {
        precondition(dimensions.reduce(1, *) == bytes.count)
        var out: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
        for d in dimensions {
            out += [UInt8(truncatingIfNeeded: d >> 24), UInt8(truncatingIfNeeded: d >> 16),
                    UInt8(truncatingIfNeeded: d >> 8), UInt8(truncatingIfNeeded: d)]
        }
        return out + bytes
    }
}
