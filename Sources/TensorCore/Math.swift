import _Differentiation

// Scalar building blocks written for LLVM's loop vectorizer.
//
// libm's expf/log1pf are opaque calls, one element at a time; a training step
// of the MLP VAE evaluates ~200k of them. These are Cephes' single-precision
// polynomials (about 1 ulp on their ranges), written branch-free with bit
// manipulation and wrapping integer arithmetic, so a loop that calls them
// compiles to AVX2/AVX-512 code. Float reductions are not reassociated by the
// compiler, so `sum` uses explicit SIMD accumulators.

/// e^x, Cephes `expf`. Inputs above 88.376 saturate to ~2.4e38 (not +inf);
/// inputs below -87.34 give 2^-126 times a polynomial (≈ 1e-38). NaN propagates.
@inlinable @inline(__always)
public func fastExp(_ x: Float) -> Float {
    let x = Swift.min(Swift.max(x, -87.336_544), 88.376_262)
    // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
    let magic: Float = 12_582_912
    let t = x * 1.442_695_04 + magic
    let n = t - magic
    // r = x - n·ln2, with ln2 split in two for accuracy (Cody–Waite).
    let r = (x - n * 0.693_359_375) + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    p = p * (r * r) + r + 1
    let scale = Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)
    return p * scale
}

/// ln(x) for positive, normal x, Cephes `logf`.
@inlinable @inline(__always)
public func fastLog(_ x: Float) -> Float {
    let bits = x.bitPattern
    // x = m · 2^e with m in [0.5, 1)
    var e = Float(Int32(bitPattern: (bits &>> 23) & 0xFF) &- 126)
    var m = Float(bitPattern: (bits & 0x007F_FFFF) | 0x3F00_0000)
    let small = m < 0.707_106_781
    e = small ? e - 1 : e
    m = small ? m + m - 1 : m - 1
    let z = m * m
    var y: Float = 7.037_683_629_2e-2
    y = y * m - 1.151_461_031_0e-1
    y = y * m + 1.167_699_874_0e-1
    y = y * m - 1.242_014_084_6e-1
    y = y * m + 1.424_932_278_7e-1
    y = y * m - 1.666_805_766_5e-1
    y = y * m + 2.000_071_476_5e-1
    y = y * m - 2.499_999_399_3e-1
    y = y * m + 3.333_333_117_4e-1
    y = y * m * z
    y += e * -2.121_944_40e-4
    y += -0.5 * z
    return (m + y) + e * 0.693_359_375
}

/// ln(1 + t) for t in [0, 1], accurate for tiny t (Goldberg's trick:
/// log(u)·t/(u−1) with u = 1 + t cancels the rounding of u).
@inlinable @inline(__always)
public func fastLog1p(_ t: Float) -> Float {
    let u = 1 + t
    let d = u - 1
    return d == 0 ? t : fastLog(u) * (t / d)
}

/// Sum of `count` floats from `p`, in a fixed order (16 lanes, then the lanes
/// in order, then the tail), so results are reproducible run to run.
@inlinable
public func vectorSum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var acc0 = SIMD16<Float>()
    var acc1 = SIMD16<Float>()
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + 32 <= count {
        acc0 = acc0 + raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        acc1 = acc1 + raw.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self)
        i += 32
    }
    acc0 = acc0 + acc1
    var total = acc0.sum()
    while i < count {
        total += p[i]
        i += 1
    }
    return total
}

extension Array where Element == Float {
    /// Fixed-order vectorized sum of the elements (see `vectorSum`).
    @inlinable
    public func vectorSum() -> Float {
        withUnsafeBufferPointer { b in
            b.isEmpty ? 0 : TensorCore.vectorSum(b.baseAddress!, count: b.count)
        }
    }
}

/// Copies `count` floats and reports whether all of them are finite, in one
/// pass (the check is an integer OR over exponent bits, which vectorizes).
@inlinable
public func copyCheckingFinite(from source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>,
                               count: Int) -> Bool {
    var nonFinite: UInt32 = 0
    for i in 0..<count {
        let v = source[i]
        destination[i] = v
        nonFinite |= (v.bitPattern & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
    }
    return nonFinite == 0
}
