import CZlib
import Foundation
import TensorCore
import VAEModel

/// The `.vaez` container: everything needed to decode the samples back,
/// bit for bit, into the file or folder they came from.
///
///     "VAEZ" | format version (u16) | header length (u32) | header (JSON) | header CRC-32 (u32)
///     chunk count (u32) | per chunk: first sample (u64), samples (u64), words (u64), CRC-32 of its words (u32)
///     the chunks' words (u32 each)
///
/// All integers little-endian. The header names the model (a hash of its
/// architecture and parameters, and the checkpoint it came from), the
/// samples' shape, levels and count, the codec's precisions, and how the
/// samples were stored (an .npy array's dtype and shape, IDX dimensions, or
/// an image folder's file names). Each chunk is one bits-back chain
/// (`BitsBackCodec`) over a contiguous run of samples, coded and decoded on
/// its own, so a file written by any number of ranks decodes at any other.
public struct CompressedFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("VAEZ".utf8)
    public static let formatVersion: UInt16 = 1

    public struct Header: Codable, Equatable, Sendable {
        /// "fnv1a64:…" of the model's architecture and parameters (`modelHash`).
        public var modelHash: String
        /// The checkpoint the samples were coded with (for messages).
        public var checkpoint: String
        public var architecture: Architecture
        public var image: ImageShape
        /// K.
        public var levels: Int
        public var count: Int
        public var precisions: CodecPrecisions
        /// Pseudo-random words each chain starts from (`BitsBackCodec.seedMessage`).
        public var seedWords: Int
        /// How the samples were stored, to write them back the same way.
        public var source: SampleFormat
        /// The model's −ELBO on these samples when they were coded, in bits per
        /// dimension (the training kernels' figure, for comparison with the rate).
        public var elboBitsPerDimension: Double?
        /// "vae-mpi 0.1.0": the program that wrote the file.
        public var writer: String

        public init(modelHash: String, checkpoint: String, architecture: Architecture, image: ImageShape, levels: Int,
                    count: Int, precisions: CodecPrecisions, seedWords: Int, source: SampleFormat,
                    elboBitsPerDimension: Double?, writer: String) {
            self.modelHash = modelHash
            self.checkpoint = checkpoint
            self.architecture = architecture
            self.image = image
            self.levels = levels
            self.count = count
            self.precisions = precisions
            self.seedWords = seedWords
            self.source = source
            self.elboBitsPerDimension = elboBitsPerDimension
            self.writer = writer
        }
    }

    /// How coded samples were stored.
    public enum SampleFormat: Codable, Equatable, Sendable {
        /// An .npy array: its dtype (descr) and shape.
        case npy(descr: String, shape: [Int])
        /// An IDX file: its dimensions (unsigned bytes).
        case idx(dimensions: [Int])
        /// A folder of images: their paths relative to it, in order.
        case images(names: [String])
    }

    public struct Chunk: Equatable, Sendable {
        /// The first sample's index and the number of samples.
        public var first: Int
        public var count: Int
        /// The chain's final message (`ANSMessage.words`).
        public var words: [UInt32]

        public init(first: Int, count: Int, words: [UInt32]) {
            self.first = first
            self.count = count
            self.words = words
        }
    }

    public var header: Header
    public var chunks: [Chunk]

    public init(header: Header, chunks: [Chunk]) {
        self.header = header
        self.chunks = chunks
    }

    // MARK: - Writing

    public var bytes: [UInt8] {
        var out = Self.magic
        out += Self.le(Self.formatVersion)
        let json = Array((try? Self.encoder.encode(header)) ?? Data())
        out += Self.le(UInt32(json.count)) + json + Self.le(Self.crc(json))
        out += Self.le(UInt32(chunks.count))
        for chunk in chunks {
            out += Self.le(UInt64(chunk.first)) + Self.le(UInt64(chunk.count)) + Self.le(UInt64(chunk.words.count))
            out += Self.le(Self.crc(Self.wordBytes(chunk.words)))
        }
        for chunk in chunks { out += Self.wordBytes(chunk.words) }
        return out
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = .sortedKeys
        return e
    }()

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    static func wordBytes(_ words: [UInt32]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(4 * words.count)
        for w in words { out += le(w) }
        return out
    }

    /// Little-endian 32-bit words of `bytes` (a multiple of 4 long).
    static func words(_ bytes: [UInt8]) -> [UInt32] {
        (0..<bytes.count / 4).map { i -> UInt32 in
            let b0 = UInt32(bytes[4 * i]), b1 = UInt32(bytes[4 * i + 1]) << 8
            let b2 = UInt32(bytes[4 * i + 2]) << 16, b3 = UInt32(bytes[4 * i + 3]) << 24
            return b0 | b1 | b2 | b3
        }
    }

    static func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    // MARK: - Reading

    /// Parses a file's bytes. Every problem is a `CompressedFileError`
    /// naming the file and the part (the header, or the chunk) that fails.
    public init(parsing data: [UInt8], path: String) throws {
        var at = 0
        func take(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
            guard n >= 0, at <= data.count, n <= data.count - at else {
                throw CompressedFileError.truncated(path: path, part: what)
            }
            defer { at += n }
            return data[at ..< at + n]
        }
        func integer<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
            let bytes = try take(MemoryLayout<T>.size, what)
            return bytes.reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        guard Array(try take(4, "the magic")) == Self.magic else {
            throw CompressedFileError.notCompressed(path: path)
        }
        let version = try integer(UInt16.self, "the format version")
        guard version == Self.formatVersion else {
            throw CompressedFileError.unsupportedVersion(path: path, version: Int(version))
        }
        let length = Int(try integer(UInt32.self, "the header length"))
        let json = Array(try take(length, "the header"))
        let headerCRC = try integer(UInt32.self, "the header checksum")
        guard Self.crc(json) == headerCRC else { throw CompressedFileError.damaged(path: path, part: "the header") }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            header = try decoder.decode(Header.self, from: Data(json))
        } catch {
            throw CompressedFileError.badHeader(path: path, detail: "\(error)")
        }
        try Self.check(header, path: path)
        let chunkCount = Int(try integer(UInt32.self, "the chunk table"))
        guard chunkCount >= 1, chunkCount <= header.count else {
            throw CompressedFileError.badHeader(path: path, detail: "\(chunkCount) chunks for \(header.count) samples")
        }
        var table: [(first: Int, count: Int, words: Int, crc: UInt32)] = []
        var next = 0
        for c in 0..<chunkCount {
            let first = try integer(UInt64.self, "the chunk table"), count = try integer(UInt64.self, "the chunk table")
            let words = try integer(UInt64.self, "the chunk table"), crc = try integer(UInt32.self, "the chunk table")
            guard first == UInt64(next), count >= 1, count <= UInt64(header.count - next), words >= 2,
                  words <= UInt64(data.count / 4) else {
                throw CompressedFileError.badChunk(path: path, chunk: c, detail: "its entry in the table is inconsistent")
            }
            table.append((Int(first), Int(count), Int(words), crc))
            next += Int(count)
        }
        guard next == header.count else {
            throw CompressedFileError.badHeader(path: path, detail: "the chunks hold \(next) of \(header.count) samples")
        }
        chunks = []
        for (c, entry) in table.enumerated() {
            guard entry.words <= (data.count - at) / 4 else {
                throw CompressedFileError.truncated(path: path, part: "chunk \(c)")
            }
            let bytes = Array(try take(4 * entry.words, "chunk \(c)"))
            guard Self.crc(bytes) == entry.crc else { throw CompressedFileError.damaged(path: path, part: "chunk \(c)") }
            let words = Self.words(bytes)
            chunks.append(Chunk(first: entry.first, count: entry.count, words: words))
        }
        guard at == data.count else {
            throw CompressedFileError.badHeader(path: path, detail: "\(data.count - at) bytes after the last chunk")
        }
    }

    /// The header's values must describe something this build can decode.
    static func check(_ h: Header, path: String) throws {
        func bad(_ detail: String) -> CompressedFileError { .badHeader(path: path, detail: detail) }
        guard (1...1 << 30).contains(h.count) else { throw bad("\(h.count) samples") }
        guard (2...65536).contains(h.levels) else { throw bad("\(h.levels) levels") }
        guard h.image.channels >= 1, h.image.height >= 1, h.image.width >= 1,
              let d = checkedProduct([h.image.channels, h.image.height, h.image.width]), d <= 1 << 24,
              checkedProduct([d, h.count]) != nil else { throw bad("image shape \(h.image)") }
        do { try h.precisions.validate(levels: h.levels) } catch { throw bad("\(error)") }
        guard (2...1 << 16).contains(h.seedWords) else { throw bad("\(h.seedWords) seed words") }
        do {
            try h.architecture.validateLimits(for: h.image)
        } catch {
            throw bad("\(error)")
        }
        switch h.source {
        case let .npy(_, shape):
            guard checkedProduct(shape) == h.count * h.image.size, shape.first == h.count else {
                throw bad(".npy shape \(shape) for \(h.count) samples of \(h.image)")
            }
        case let .idx(dimensions):
            guard checkedProduct(dimensions) == h.count * h.image.size, dimensions.first == h.count else {
                throw bad("IDX dimensions \(dimensions) for \(h.count) samples of \(h.image)")
            }
        case let .images(names):
            guard names.count == h.count, names.allSatisfy({ !$0.isEmpty && !$0.hasPrefix("/") && !$0.contains("..") }) else {
                throw bad("\(names.count) image names for \(h.count) samples")
            }
        }
    }
}

/// A hash of a model: FNV-1a (64 bits) over its architecture (JSON) and
/// every parameter's name, shape and values, in walk order.
public func modelHash(architecture: Architecture, parameters: [(name: String, tensor: Tensor)]) -> String {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    func add(_ bytes: [UInt8]) { for b in bytes { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01B3 } }
    add(Array((try? CompressedFile.encoder.encode(architecture)) ?? Data()))
    for (name, tensor) in parameters where tensor.count > 0 {
        add(Array(name.utf8))
        for d in tensor.shape { add(CompressedFile.le(UInt64(d))) }
        for v in tensor.scalars { add(CompressedFile.le(v.bitPattern)) }
    }
    return "fnv1a64:" + String(hash, radix: 16)
}

/// What is wrong with a `.vaez` file, naming it and the part that fails.
public enum CompressedFileError: Error, Equatable, CustomStringConvertible {
    case notCompressed(path: String)
    case unsupportedVersion(path: String, version: Int)
    case truncated(path: String, part: String)
    case damaged(path: String, part: String)
    case badHeader(path: String, detail: String)
    case badChunk(path: String, chunk: Int, detail: String)
    /// Decoding a chunk failed (the model differs, or the stream is damaged).
    case undecodable(path: String, chunk: Int, detail: String)
    case wrongModel(path: String, fileModel: String, fileCheckpoint: String, checkpoint: String, model: String)

    public var description: String {
        switch self {
        case let .notCompressed(path):
            return "\(path): not a vae-mpi compressed file (no VAEZ magic)"
        case let .unsupportedVersion(path, version):
            return "\(path): format version \(version) is newer than this vae-mpi reads (1)"
        case let .truncated(path, part):
            return "\(path): truncated in \(part)"
        case let .damaged(path, part):
            return "\(path): \(part) fails its CRC-32 check (the file is damaged)"
        case let .badHeader(path, detail):
            return "\(path): bad header: \(detail)"
        case let .badChunk(path, chunk, detail):
            return "\(path): chunk \(chunk): \(detail)"
        case let .undecodable(path, chunk, detail):
            return "\(path): chunk \(chunk) does not decode: \(detail)"
        case let .wrongModel(path, fileModel, fileCheckpoint, checkpoint, model):
            return "\(path) was compressed with another model (\(fileModel), checkpoint \(fileCheckpoint)) than "
                + "\(checkpoint) (\(model)); decompress it with the checkpoint it was compressed with"
        }
    }
}
