import Collectives
import Compression
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Lossless compression with a trained model (`vae-mpi compress` and
/// `decompress`): bits-back chains over contiguous chunks of samples, the
/// chunks dealt to ranks in contiguous blocks.
extension Inference {
    /// The codec of a checkpoint's model, on the portable kernels.
    public static func codec(_ checkpoint: Checkpoint, precisions: CodecPrecisions) throws -> BitsBackCodec {
        let architecture = checkpoint.architecture
        func parameters<Options: ArchitectureOptions>(_ options: Options) throws -> [(name: String, tensor: Tensor)] {
            try checkpoint.model(options).namedParameters
        }
        let named = try parameters(architecture.options)
        let model = try PortableModel(architecture: architecture, image: checkpoint.sidecar.image, parameters: named)
        guard let levels = architecture.likelihood.levels ?? (architecture.likelihood.isDiscrete ? 2 : nil) else {
            throw BitsBackCodec.Failure.notDiscrete(architecture.likelihood.name)
        }
        return try BitsBackCodec(model: model, likelihood: architecture.likelihood, levels: levels, precisions: precisions)
    }

    /// The hash that names a checkpoint's model in compressed files.
    public static func modelHash(_ checkpoint: Checkpoint) throws -> String {
        func parameters<Options: ArchitectureOptions>(_ options: Options) throws -> [(name: String, tensor: Tensor)] {
            try checkpoint.model(options).namedParameters
        }
        return Compression.modelHash(architecture: checkpoint.architecture,
                                     parameters: try parameters(checkpoint.architecture.options))
    }

    /// The chunks of `count` samples of `size` each: [first, first + size), the last shorter.
    public static func chunks(count: Int, size: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: size).map { $0 ..< min($0 + size, count) }
    }

    /// Codes `samples` (N × D levels, row-major) chunk by chunk: this rank
    /// its contiguous block of chunks, each chain from its seed, samples in
    /// reverse order (so that decoding yields them in order). Every rank
    /// ends with every chunk.
    public static func compress(_ samples: [Int], count: Int, codec: BitsBackCodec, chunkSize: Int,
                                communicator: Communicator) throws -> [CompressedFile.Chunk] {
        let d = codec.model.image.size
        let all = chunks(count: count, size: chunkSize)
        let mine = ShardPlan.block(count: all.count, rank: communicator.rank, size: communicator.size)
        let coded = try communicator.collectively { () -> [CompressedFile.Chunk] in
            try mine.map { c -> CompressedFile.Chunk in
                var message = codec.seedMessage(chain: c)
                for i in all[c].reversed() { try codec.encode(Array(samples[i * d ..< (i + 1) * d]), onto: &message) }
                return CompressedFile.Chunk(first: all[c].lowerBound, count: all[c].count, words: message.words)
            }
        }
        // Every rank's chunks to every rank, in rank order (so in chunk order).
        var gathered: [CompressedFile.Chunk] = []
        for r in 0..<communicator.size {
            let bytes = try communicator.broadcast(bytes: r == communicator.rank ? Self.chunkBytes(coded) : [], root: r)
            gathered += Self.chunks(from: bytes)
        }
        return gathered
    }

    /// Decodes a file's chunks (this rank its block of them) into N × D
    /// levels on every rank. A chain that fails to decode, or does not
    /// return to its seed (another model, or damaged data), is an error
    /// naming the chunk.
    public static func decompress(_ file: CompressedFile, path: String, codec: BitsBackCodec,
                                  communicator: Communicator) throws -> [Int] {
        let d = codec.model.image.size, n = file.header.count
        let mine = ShardPlan.block(count: file.chunks.count, rank: communicator.rank, size: communicator.size)
        var values = [Float](repeating: 0, count: n * d)
        try communicator.collectively {
            for c in mine {
                let chunk = file.chunks[c]
                do {
                    var message = try ANSMessage(words: chunk.words)
                    for i in chunk.first ..< chunk.first + chunk.count {
                        let x = try codec.decode(from: &message)
                        for j in 0..<d { values[i * d + j] = Float(x[j]) }
                    }
                    guard message == codec.seedMessage(chain: c) else {
                        throw CompressedFileError.undecodable(path: path, chunk: c, detail: "the chain does not return to its seed "
                                                              + "(another model, or damaged data)")
                    }
                } catch let error as ANSError {
                    throw CompressedFileError.undecodable(path: path, chunk: c, detail: "\(error) (another model, or damaged data)")
                }
            }
        }
        try communicator.allreduceSum(&values)
        return values.map { Int($0) }
    }

    static func chunkBytes(_ chunks: [CompressedFile.Chunk]) -> [UInt8] {
        var out: [UInt8] = []
        for c in chunks {
            for v in [UInt64(c.first), UInt64(c.count), UInt64(c.words.count)] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
            for w in c.words { withUnsafeBytes(of: w.littleEndian) { out += $0 } }
        }
        return out
    }

    static func chunks(from bytes: [UInt8]) -> [CompressedFile.Chunk] {
        var out: [CompressedFile.Chunk] = []
        var at = 0
        func u64() -> Int {
            defer { at += 8 }
            return Int(bytes[at ..< at + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        }
        while at < bytes.count {
            let first = u64(), count = u64(), words = u64()
            let w = (0..<words).map { i -> UInt32 in
                let o = at + 4 * i
                let low = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8
                return low | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
            }
            at += 4 * words
            out.append(CompressedFile.Chunk(first: first, count: count, words: w))
        }
        return out
    }
}
