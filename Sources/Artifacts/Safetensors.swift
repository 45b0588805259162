import Foundation
import TensorCore

/// The safetensors format (huggingface/safetensors, docs "Format"): an 8-byte
/// little-endian header length N, N bytes of JSON header (padded with spaces
/// to a multiple of 8), then the tensor bytes. The header maps each tensor
/// name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative
/// to the start of the data), plus an optional `"__metadata__"` map of
/// strings. Tensors are contiguous, row-major, little-endian, and together
/// cover the data exactly. Only F32 is written or read here.
public struct SafetensorsFile: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var shape: [Int]
        public var scalars: [Float]

        public init(name: String, shape: [Int], scalars: [Float]) {
            precondition(shape.reduce(1, *) == scalars.count, "\(name): shape \(shape) vs \(scalars.count) values")
            self.name = name
            self.shape = shape
            self.scalars = scalars
        }
    }

    /// Tensors in file order.
    public var entries: [Entry]
    /// The `__metadata__` map (strings only, per the format).
    public var metadata: [String: String]

    public init(entries: [Entry], metadata: [String: String] = [:]) {
        self.entries = entries
        self.metadata = metadata
    }

    public subscript(name: String) -> Entry? { entries.first { $0.name == name } }

    /// The file's bytes.
    public func encoded() -> [UInt8] {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(JSONText.quote($0)):\(JSONText.quote(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for e in entries {
            let size = 4 * e.scalars.count
            parts.append("\(JSONText.quote(e.name)):{\"dtype\":\"F32\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for e in entries {
            e.scalars.withUnsafeBytes { raw in
                #if _endian(little)
                out.append(contentsOf: raw)
                #else
                for v in e.scalars { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                #endif
            }
        }
        return out
    }

    /// Parses and validates a safetensors file read from `path`.
    public init(parsing bytes: [UInt8], path: String) throws {
        func corrupt(_ check: String) -> ArtifactError { .corrupt(path: path, check: check) }
        guard bytes.count >= 8 else { throw corrupt("file has \(bytes.count) bytes, less than the 8-byte header length") }
        let headerLength = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= 100_000_000, 8 + Int(headerLength) <= bytes.count else {
            throw corrupt("header length \(headerLength) exceeds the file size \(bytes.count)")
        }
        let dataStart = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]))
        } catch {
            throw corrupt("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw corrupt("header is not a JSON object") }
        var metadata: [String: String] = [:]
        if let m = header["__metadata__"] {
            guard let m = m as? [String: String] else { throw corrupt("__metadata__ is not a map of strings") }
            metadata = m
        }
        var spans: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any],
                  let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int],
                  let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw corrupt("entry \(name) lacks dtype, shape or data_offsets") }
            guard dtype == "F32" else {
                throw ArtifactError.incompatible(path: path, detail: "tensor \(name) has dtype \(dtype); only F32 is supported")
            }
            // Sizes from the file: checked arithmetic (a shape like [2^62, 4] must not trap).
            guard let count = checkedProduct(shape), let byteCount = checkedOffset(0, plus: count, times: 4),
                  offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == byteCount
            else { throw corrupt("tensor \(name): data_offsets \(offsets) do not hold shape \(shape) of F32") }
            spans.append((name, shape, offsets[0], offsets[1]))
        }
        spans.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for s in spans {
            guard s.begin == expected else {
                throw corrupt("tensor \(s.name) starts at byte \(s.begin), expected \(expected) (holes or overlaps in the data)")
            }
            expected = s.end
        }
        guard expected <= bytes.count - dataStart, dataStart + expected == bytes.count else {
            throw corrupt("tensors cover \(expected) data bytes but the file holds \(bytes.count - dataStart)")
        }
        var entries: [Entry] = []
        for s in spans {
            let count = (s.end - s.begin) / 4
            let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                bytes.withUnsafeBytes { raw in
                    for i in 0..<count {
                        let bits = raw.loadUnaligned(fromByteOffset: dataStart + s.begin + 4 * i, as: UInt32.self)
                        buffer[i] = Float(bitPattern: UInt32(littleEndian: bits))
                    }
                }
                initialized = count
            }
            entries.append(Entry(name: s.name, shape: s.shape, scalars: scalars))
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// Reads and validates a safetensors file.
    public init(contentsOf path: String) throws {
        guard Files.exists(path) else { throw ArtifactError.io(path: path, operation: "open", reason: "no such file") }
        try self.init(parsing: try Files.read(path), path: path)
    }
}
