import Foundation

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

    /// Raw little-endian element bytes with NumPy's `descr` ("|u1", "<u2", "<f4").
    public static func encode(rawBytes: [UInt8], descr: String, shape: [Int]) -> [UInt8] {
        header(descr: descr, shape: shape) + rawBytes
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

/// Writes tables as CSV (RFC 4180): a header row, then one row per sample;
/// numbers in their shortest form that reads back to the same value.
public enum CSVWriter {
    /// `values` holds rows × header.count numbers, row-major.
    public static func encode(header: [String], values: [Double], extraColumns: [(name: String, values: [String])] = [])
        -> [UInt8]
    {
        let width = header.count
        precondition(width > 0 && values.count % width == 0, "csv: \(values.count) values in rows of \(width)")
        let rows = values.count / width
        precondition(extraColumns.allSatisfy { $0.values.count == rows }, "csv: one value per row in every extra column")
        var text = (header + extraColumns.map(\.name)).map(field).joined(separator: ",") + "\n"
        text.reserveCapacity(rows * width * 12)
        for r in 0..<rows {
            var fields = (0..<width).map { number(values[r * width + $0]) }
            fields += extraColumns.map { field($0.values[r]) }
            text += fields.joined(separator: ",") + "\n"
        }
        return Array(text.utf8)
    }

    /// A Float-valued table (latents, samples without a standardization).
    public static func encode(header: [String], floats: [Float], extraColumns: [(name: String, values: [String])] = [])
        -> [UInt8]
    {
        encode(header: header, values: floats.map(Double.init), extraColumns: extraColumns)
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        // Values that came from Float print as Float (shortest round trip), others as Double.
        if let f = Float(exactly: v) { return "\(f)" }
        return "\(v)"
    }

    /// A field, quoted when it holds a comma, a quote or a line break.
    static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
