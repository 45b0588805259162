/// Writes NumPy's `.npy` format, version 1.0 (numpy.lib.format): the magic
/// `\x93NUMPY`, version bytes 1 0, a little-endian UInt16 header length, an
/// ASCII dict literal `{'descr': …, 'fortran_order': False, 'shape': (…), }`
/// padded with spaces and a newline so the data starts at a multiple of 64,
/// then the array in C order.
public enum NPYWriter {
    /// float32 data of the given shape.
    public static func encode(_ values: [Float], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "npy: shape \(shape) vs \(values.count) values")
        var out = header(descr: "<f4", shape: shape)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        return out
    }

    /// float64 data of the given shape.
    public static func encode(_ values: [Double], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "npy: shape \(shape) vs \(values.count) values")
        var out = header(descr: "<f8", shape: shape)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        return out
    }

    /// int64 data of the given shape.
    public static func encode(_ values: [Int64], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "npy: shape \(shape) vs \(values.count) values")
        var out = header(descr: "<i8", shape: shape)
        for v in values { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        return out
    }

    /// uint8 data of the given shape.
    public static func encode(_ values: [UInt8], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "npy: shape \(shape) vs \(values.count) values")
        return header(descr: "|u1", shape: shape) + values
    }

    static func header(descr: String, shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = UInt16(dict.utf8.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8)
    }
}
