import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
/// SC'11; the Random123 reference). A counter-based generator: each 128-bit
/// counter maps to four independent 32-bit words under a 64-bit key, with no
/// state carried between calls. Any number can be recomputed from its
/// coordinates, which is what makes runs reproducible and resumable.
public enum Philox {
    @inlinable
    public static func block(_ counter: SIMD4<UInt32>, key: SIMD2<UInt32>) -> SIMD4<UInt32> {
        var c = counter
        var k = key
        for round in 0..<10 {
            if round > 0 { k &+= SIMD2(0x9E37_79B9, 0xBB67_AE85) }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c[0])
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c[2])
            c = SIMD4(UInt32(truncatingIfNeeded: p1 >> 32) ^ c[1] ^ k[0],
                      UInt32(truncatingIfNeeded: p1),
                      UInt32(truncatingIfNeeded: p0 >> 32) ^ c[3] ^ k[1],
                      UInt32(truncatingIfNeeded: p0))
        }
        return c
    }
}

/// What a stream of random numbers is for. Part of every counter, so streams
/// for different purposes never overlap even with equal coordinates.
public enum RandomDomain: UInt32, Sendable {
    case initialization = 1
    case dataPermutation = 2
    case epochShuffle = 3
    case trainingNoise = 4
    case evaluationNoise = 5
    case sampling = 6
    /// `--reproducible`'s training noise, keyed by (image, step) instead of (rank, step).
    case sampleNoise = 7
    /// Imputation and inpainting: keyed by (row, purpose), the same whichever rank imputes the row.
    case imputation = 8
    /// Training's input dropout (`--input-dropout`): keyed by (sample, step), the rank mixed into the seed.
    case inputDropout = 9
    /// Held-out users' fold-in/held-out split, keyed by the user's row.
    case recommendation = 10
}

/// A stream of random numbers at fixed coordinates: (seed, domain, a, b).
///
/// Element `i` of the stream is a pure function of the coordinates and `i`.
/// The trainer uses, for example, `(seed, .trainingNoise, rank, step)` and
/// `(seed, .epochShuffle, epoch, rank)`.
public struct RandomStream: Sendable {
    public let seed: UInt64
    public let domain: RandomDomain
    public let a: UInt32
    public let b: UInt32

    public init(seed: UInt64, domain: RandomDomain, _ a: UInt32 = 0, _ b: UInt32 = 0) {
        self.seed = seed
        self.domain = domain
        self.a = a
        self.b = b
    }

    @inlinable
    var key: SIMD2<UInt32> {
        SIMD2(UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// The four 32-bit words of block `index`.
    @inlinable
    public func block(_ index: UInt32) -> SIMD4<UInt32> {
        Philox.block(SIMD4(index, domain.rawValue, a, b), key: key)
    }

    /// `count` 32-bit words, from word `offset` on.
    public func words(count: Int, offset: Int = 0) -> [UInt32] {
        precondition(offset >= 0 && count >= 0 && (offset + count) / 4 < Int(UInt32.max),
                     "random stream exhausted")
        return [UInt32](unsafeUninitializedCapacity: count) { out, initialized in
            fill(out.baseAddress!, count: count, offset: offset) { $0 }
            initialized = count
        }
    }

    /// Writes `transform(word)` for `count` words from word `offset` on. The
    /// blocks come from `ck_philox_blocks` (16 at a time with AVX-512; the
    /// bits of `Philox.block`), 1,024 at a time.
    @inline(__always)
    func fill<T>(_ out: UnsafeMutablePointer<T>, count: Int, offset: Int, _ transform: (UInt32) -> T) {
        guard count > 0 else { return }
        let key = self.key
        let chunk = 1024
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 4 * chunk) { words in
            var block = offset / 4, skip = offset % 4, n = 0
            while n < count {
                let blocks = Swift.min(chunk, (skip + count - n + 3) / 4)
                ck_philox_blocks(key[0], key[1], domain.rawValue, a, b, UInt32(truncatingIfNeeded: block), blocks,
                                 words.baseAddress!)
                let take = Swift.min(4 * blocks - skip, count - n)
                for w in 0..<take { out[n + w] = transform(words[skip + w]) }
                n += take
                block += blocks
                skip = 0
            }
        }
    }

    /// Uniforms `indices[i]` of the stream, each alone (as `uniform(at:)`,
    /// vectorised over the indices), into `out` (replacing what it held).
    public func uniforms(at indices: [Int64], into out: inout [Float]) {
        out.removeAll(keepingCapacity: true)
        guard !indices.isEmpty else { return }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: indices.count) { words in
            indices.withUnsafeBufferPointer { self.words(at: $0, into: words.baseAddress!) }
            out.append(contentsOf: words.lazy.map(Self.openUnit))
        }
    }

    /// Words `indices[i]` of the stream, each alone (random access; as
    /// `block(index / 4)[index % 4]`), vectorised over the indices.
    public func words(at indices: UnsafeBufferPointer<Int64>, into out: UnsafeMutablePointer<UInt32>) {
        guard let base = indices.baseAddress, !indices.isEmpty else { return }
        let key = self.key
        ck_philox_words_at(key[0], key[1], domain.rawValue, a, b, base, indices.count, out)
    }

    /// `count` uniforms in the open interval (0, 1), 24 random bits each.
    public func uniforms(count: Int, offset: Int = 0) -> [Float] {
        precondition(offset >= 0 && count >= 0 && (offset + count) / 4 < Int(UInt32.max), "random stream exhausted")
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            fill(out.baseAddress!, count: count, offset: offset, Self.openUnit)
            initialized = count
        }
    }

    /// Uniform `index` of the stream, in (0, 1), alone (random access).
    @inlinable
    public func uniform(at index: Int) -> Float {
        precondition(index >= 0 && index / 4 < Int(UInt32.max), "random stream exhausted")
        return Self.openUnit(block(UInt32(index / 4))[index % 4])
    }

    /// `count` standard normals (Box–Muller on pairs of uniforms); element `i`
    /// uses words `2i` and `2i+1`, so any slice can be recomputed alone.
    public func normals(count: Int, offset: Int = 0) -> [Float] {
        let w = words(count: 2 * count, offset: 2 * offset)
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            for i in 0..<count { out[i] = Self.normal(w[2 * i], w[2 * i + 1]) }
            initialized = count
        }
    }

    @inlinable
    public static func openUnit(_ w: UInt32) -> Float {
        (Float(w >> 8) + 0.5) * (1.0 / 16_777_216.0)
    }

    @inlinable
    static func normal(_ w0: UInt32, _ w1: UInt32) -> Float {
        // Box–Muller in Double, so the tails are not cut short by Float's
        // resolution. Noise is only used on the rank that drew it, so a libm
        // that differs between hosts cannot make replicas diverge.
        let u1 = (Double(w0) + 0.5) / 4_294_967_296.0
        let u2 = (Double(w1) + 0.5) / 4_294_967_296.0
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    @inlinable
    static func bounded(_ hi: UInt32, _ lo: UInt32, below bound: UInt64) -> Int {
        let r = UInt64(hi) << 32 | UInt64(lo)
        return Int(r.multipliedFullWidth(by: bound).high)
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates), identical on
    /// every host for the same coordinates: integer arithmetic only.
    public func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        // Swap targets for i = n-1 … 1, drawn in one pass over the stream.
        let words = self.words(count: 2 * (n - 1))
        for (k, i) in stride(from: n - 1, through: 1, by: -1).enumerated() {
            let j = Self.bounded(words[2 * k], words[2 * k + 1], below: UInt64(i + 1))
            p.swapAt(i, j)
        }
        return p
    }
}

extension Tensor {
    /// A tensor of standard normals from `stream`, element i = stream normal i + offset.
    public init(normalsFrom stream: RandomStream, shape: [Int], offset: Int = 0) {
        self.init(shape: shape, scalars: stream.normals(count: shape.reduce(1, *), offset: offset))
    }

    /// A tensor of uniforms in (low, high) from `stream`.
    public init(uniformFrom stream: RandomStream, shape: [Int], low: Float, high: Float, offset: Int = 0) {
        let u = stream.uniforms(count: shape.reduce(1, *), offset: offset)
        self.init(shape: shape, scalars: u.map { low + (high - low) * $0 })
    }
}

/// Uniforms for drawing samples element by element: draw `d` of element `e`
/// is a pure function of (stream, e + offset, d), so a sampler may take as
/// many draws as it needs (rejection methods), and the same element gets the
/// same draws whichever rank or batch draws it. At most 64 draws per element.
public struct ElementUniforms: Sendable {
    public static let drawsPerElement = 64
    public let stream: RandomStream
    /// Added to the element index: the global index of the batch's first element.
    public let offset: Int

    public init(stream: RandomStream, offset: Int = 0) {
        self.stream = stream
        self.offset = offset
    }

    /// Draw `draw` (0 ..< 64) of element `element`, in (0, 1).
    @inlinable
    public func callAsFunction(_ element: Int, _ draw: Int) -> Float {
        precondition(draw >= 0 && draw < Self.drawsPerElement, "at most 64 draws per element")
        return stream.uniform(at: (offset + element) * Self.drawsPerElement + draw)
    }
}
