// The bits-back codec's arithmetic (Sources/Compression): decoding must reproduce the encoder's frequencies
// bit for bit on any x86-64 CPU, with any build of the same vae-mpi (debug
// or release) and any C library. So every function here is built from IEEE
// +, −, ×, ÷ and sqrt (correctly rounded everywhere) in a fixed order, with
// fixed iteration counts: no libm call, no fused multiply-add (Swift does
// not contract a·b + c), no reassociation (Swift does not reorder floating
// sums), nothing that depends on the CPU's vector width.

/// Double precision exp, log, log1p and expm1 from basic operations only
/// (`ScalarMath`, so the likelihoods' formulas run on it unchanged).
public enum PortableMath: ScalarMath {
    @usableFromInline static let ln2High = 6.931_471_803_691_238_164_90e-01   // ln 2 to 32 bits
    @usableFromInline static let ln2Low = 1.908_214_929_270_587_700_02e-10    // ln 2 − ln2High
    @usableFromInline static let log2e = 1.442_695_040_888_963_387_00

    /// e^x: x = n·ln 2 + r, |r| ≤ ln 2 / 2 (Cody–Waite), e^r by its Taylor
    /// series to r^13 (error below 1e−16 there) by Horner's rule with the
    /// coefficients 1/k! as literals, times 2^n built from bits.
    @inlinable
    public static func exp(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x > 709.78 { return .infinity }
        if x < -745.2 { return 0 }
        let n = (x * log2e).rounded(.toNearestOrEven)
        let r = (x - n * ln2High) - n * ln2Low
        var p = 1.6059043836821613e-10   // 1/13!
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        return scaled(p, by: Int(n))
    }

    /// x·2^n for n in the range exp produces, via exact powers of two.
    @usableFromInline @inline(__always)
    static func scaled(_ x: Double, by n: Int) -> Double {
        // 2^n exactly, from its bits, over the normal range.
        if n >= -1022 && n <= 1023 { return x * Double(bitPattern: UInt64(n + 1023) << 52) }
        var x = x, n = n
        // Two steps keep every factor a normal power of two.
        while n > 1000 { x *= Double(sign: .plus, exponent: 1000, significand: 1); n -= 1000 }
        while n < -1000 { x *= Double(sign: .plus, exponent: -1000, significand: 1); n += 1000 }
        return x * Double(sign: .plus, exponent: n, significand: 1)
    }

    /// ln x for x > 0: x = m·2^e with m in [√½, √2), ln m = 2 atanh(s),
    /// s = (m − 1)/(m + 1), |s| ≤ 0.172, by its series to s^25.
    public static func log(_ x: Double) -> Double {
        if x.isNaN || x < 0 { return .nan }
        if x == 0 { return -.infinity }
        if x.isInfinite { return x }
        var m = x.significand   // [1, 2)
        var e = Double(x.exponent)
        if m > 1.414_213_562_373_095_1 {
            m /= 2
            e += 1
        }
        let s = (m - 1) / (m + 1), s2 = s * s
        var series = 0.0
        var k = 25.0
        while k >= 1 {
            series = 1 / k + s2 * series
            k -= 2
        }
        return 2 * s * series + e * ln2Low + e * ln2High
    }

    /// ln(1 + x), accurate for tiny x (Goldberg: log(u)·x/(u − 1), u = 1 + x).
    public static func log1p(_ x: Double) -> Double {
        let u = 1 + x
        if u == 1 { return x }
        return log(u) * (x / (u - 1))
    }

    /// e^x − 1, accurate for tiny x (Kahan: (u − 1)·x/log(u), u = e^x).
    public static func expm1(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x > 709 { return exp(x) }
        let u = exp(x)
        if u == 1 { return x }
        let d = u - 1
        if d == -1 { return -1 }
        return x > 30 ? d : d * (x / log(u))
    }

    /// Φ(x), the standard normal CDF, through erfc.
    public static func normalCDF(_ x: Double) -> Double {
        0.5 * erfc(-x / 1.414_213_562_373_095_1)
    }

    /// erfc(x) = 1 − erf(x). For |x| < 3: erf by the series
    /// 2x/√π e^−x² Σ (2x²)^n / (1·3·…·(2n+1)) (all terms positive), until a
    /// term no longer changes the sum; beyond, erfc by its continued fraction
    /// (Lentz), until a step no longer changes it. The stopping tests look
    /// at values only, so the same x takes the same steps everywhere.
    public static func erfc(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x < 0 { return 2 - erfc(-x) }
        if x < 3 {
            let x2 = x * x
            var term = 1.0, sum = 1.0
            // Until the terms no longer change the sum (at most 80): a test on values alone, so as fixed as the values.
            for n in 0..<80 {
                term *= 2 * x2 * oddReciprocals[n]
                let next = sum + term
                if next == sum { break }
                sum = next
            }
            let erf = 1.128_379_167_095_512_6 * x * exp(-x2) * sum   // 2/√π
            return 1 - erf
        }
        if x > 27 { return 0 }
        // erfc(x) = e^−x²/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), by Lentz's method.
        let tiny = 1e-300
        var f = x, c = x, d = 0.0
        // Until a step no longer changes f (at most 120).
        for k in 1...120 {
            let a = Double(k) / 2
            d = x + a * d
            d = d == 0 ? tiny : d
            c = x + a / c
            c = c == 0 ? tiny : c
            d = 1 / d
            let delta = c * d
            f *= delta
            if delta == 1 { break }
        }
        return exp(-x * x) * 0.564_189_583_547_756_3 / f   // 1/√π
    }

    /// 1/(2n + 3) for n = 0…79 (the erf series' factors).
    static let oddReciprocals: [Double] = (0..<80).map { 1 / Double(2 * $0 + 3) }

    /// Φ⁻¹(p) for p in (0, 1): bisection on `normalCDF` over [−40, 40], a
    /// fixed 200 halvings (the interval reaches one ulp).
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1, "normalQuantile of \(p)")
        var lo = -40.0, hi = 40.0
        for _ in 0..<200 {
            let mid = 0.5 * (lo + hi)
            if mid == lo || mid == hi { break }
            if normalCDF(mid) < p { lo = mid } else { hi = mid }
        }
        return 0.5 * (lo + hi)
    }
}
