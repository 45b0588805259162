#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes TensorBoard event files (`events.out.tfevents.<time>.<host>`): a
/// TFRecord stream of `tensorflow.Event` protocol buffers.
///
/// TFRecord framing (tensorflow/core/lib/io/record_writer.cc): for each
/// record, uint64 length (little-endian), uint32 masked CRC-32C of those 8
/// bytes, the data, uint32 masked CRC-32C of the data; masked(c) =
/// ((c >> 15) | (c << 17)) + 0xa282ead8. The first event carries
/// `file_version = "brain.Event:2"`. The protos are encoded by hand, a few
/// fields of tensorflow/core/util/event.proto (Event: wall_time 1, step 2,
/// file_version 3, summary 5, session_log 7) and
/// tensorflow/core/framework/summary.proto (Summary.value 1; Value: tag 1,
/// simple_value 2, image 4; Image: height 1, width 2, colorspace 3,
/// encoded_image_string 4), which spares a protobuf dependency.
public final class TensorBoardWriter {
    public let path: String
    private let file: AppendingFile

    /// Creates a new event file in `directory`.
    public init(directory: String, wallTime: Double) throws {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let hostName = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        path = "\(directory)/events.out.tfevents.\(Int(wallTime)).\(hostName).\(getpid())"
        file = try AppendingFile(appendingTo: path)
        var event = ProtoWriter()
        event.double(1, wallTime)
        event.bytes(3, Array("brain.Event:2".utf8))
        try write(record: event.bytes)
    }

    /// Scalars, all at one step.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double) throws {
        var summary = ProtoWriter()
        for (tag, value) in values {
            var v = ProtoWriter()
            v.bytes(1, Array(tag.utf8))
            v.float(2, Float(value))
            summary.message(1, v)
        }
        try writeEvent(step: step, wallTime: wallTime, field: 5, summary)
    }

    /// A PNG image (already encoded) under `tag`.
    public func image(_ tag: String, png: [UInt8], width: Int, height: Int, channels: Int,
                      step: Int, wallTime: Double) throws {
        var image = ProtoWriter()
        image.varint(1, UInt64(height))
        image.varint(2, UInt64(width))
        image.varint(3, UInt64(channels))
        image.bytes(4, png)
        var value = ProtoWriter()
        value.bytes(1, Array(tag.utf8))
        value.message(4, image)
        var summary = ProtoWriter()
        summary.message(1, value)
        try writeEvent(step: step, wallTime: wallTime, field: 5, summary)
    }

    /// A `SessionLog` START (Event field 7) at `step`: TensorBoard then
    /// discards events of earlier files at this step and later (what a
    /// resumed run supersedes).
    public func sessionStart(step: Int, wallTime: Double) throws {
        var log = ProtoWriter()
        log.varint(1, 1)  // SessionLog.START
        try writeEvent(step: step, wallTime: wallTime, field: 7, log)
    }

    private func writeEvent(step: Int, wallTime: Double, field: Int, _ payload: ProtoWriter) throws {
        var event = ProtoWriter()
        event.double(1, wallTime)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(field, payload)
        try write(record: event.bytes)
    }

    private func write(record data: [UInt8]) throws {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        out += withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { Array($0) }
        out += data
        out += withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { Array($0) }
        try file.write(out)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    public static func masked(_ bytes: [UInt8]) -> UInt32 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// Protocol-buffer wire format, for the few messages written here.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    private mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) {
        rawVarint(UInt64(field) << 3 | wireType)
    }

    mutating func varint(_ field: Int, _ value: UInt64) {
        key(field, 0)
        rawVarint(value)
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, 2)
        rawVarint(UInt64(value.count))
        bytes += value
    }

    mutating func message(_ field: Int, _ value: ProtoWriter) {
        bytes(field, value.bytes)
    }
}
