import Foundation

// Elementary functions that the likelihoods' formulas are written against,
// so that one formula serves the fast Float kernels of training
// (`FastMath`: Cephes polynomials the loop vectorizer can compile) and the
// Double paths of evaluation (`LibmMath`). Each formula is written once,
// generically, and specialized for each; nothing is re-derived per path.

/// exp, log, log1p and expm1 on one floating-point type; the functions
/// derived from them (softplus, log-sigmoid, log-gamma, …) are written once
/// below, for every implementation.
public protocol ScalarMath {
    associatedtype Value: BinaryFloatingPoint
    static func exp(_ x: Value) -> Value
    /// ln x for x > 0.
    static func log(_ x: Value) -> Value
    /// ln(1 + x) for x > −1, accurate for tiny x.
    static func log1p(_ x: Value) -> Value
    /// e^x − 1, accurate for tiny x.
    static func expm1(_ x: Value) -> Value
}

/// Float, on the vectorizable Cephes polynomials of Math.swift (about 1 ulp).
public enum FastMath: ScalarMath {
    @inlinable @inline(__always) public static func exp(_ x: Float) -> Float { fastExp(x) }
    @inlinable @inline(__always) public static func log(_ x: Float) -> Float { fastLog(x) }
    /// Goldberg's trick: log(u)·x/(u − 1) with u = 1 + x cancels the rounding of u.
    @inlinable @inline(__always) public static func log1p(_ x: Float) -> Float {
        let u = 1 + x
        let d = u - 1
        return d == 0 ? x : fastLog(u) * (x / d)
    }
    /// Kahan's trick: (u − 1)·x/log(u) with u = e^x cancels the rounding of u.
    @inlinable @inline(__always) public static func expm1(_ x: Float) -> Float {
        let u = fastExp(x)
        if u == 1 { return x }
        let d = u - 1
        if d == -1 { return -1 }
        // Above ~20, u − 1 is u to Float precision, and log(u) may differ from x by an ulp.
        return x > 20 ? d : d * (x / fastLog(u))
    }
}

/// Double, on the C library's functions (evaluation, reference values).
public enum LibmMath: ScalarMath {
    @inlinable @inline(__always) public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inlinable @inline(__always) public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inlinable @inline(__always) public static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    @inlinable @inline(__always) public static func expm1(_ x: Double) -> Double { Foundation.expm1(x) }
}

extension ScalarMath {
    /// log(1 + e^x), stable for any x: max(x, 0) + log1p(e^−|x|).
    @inlinable @inline(__always)
    public static func softplus(_ x: Value) -> Value {
        Swift.max(x, 0) + log1p(exp(-Swift.abs(x)))
    }

    /// 1 / (1 + e^−x), stable for any x.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: Value) -> Value {
        let t = exp(-Swift.abs(x))
        return x >= 0 ? 1 / (1 + t) : t / (1 + t)
    }

    /// log σ(x) = −softplus(−x).
    @inlinable @inline(__always)
    public static func logSigmoid(_ x: Value) -> Value { -softplus(-x) }

    /// log(e^d − 1) for d > 0: log(expm1(d)) below 1, d + log(−expm1(−d))
    /// above (where e^d could overflow).
    @inlinable @inline(__always)
    public static func logExpm1(_ d: Value) -> Value {
        d <= 1 ? log(expm1(d)) : d + log(-expm1(-d))
    }

    /// d / (1 − e^−d) for d ≥ 0 (1 at d = 0): the derivative d·(log(e^d − 1))′.
    @inlinable @inline(__always)
    public static func dOverOneMinusExpMinus(_ d: Value) -> Value {
        d == 0 ? 1 : d / -expm1(-d)
    }

    /// log Γ(x) for x > 0: Stirling's series at x + 8, shifted back by the
    /// product x(x+1)…(x+7) (one log). Relative error about 1e-15 in Double
    /// for every x > 0. Branch-free, so loops over it vectorize.
    @inlinable @inline(__always)
    public static func logGamma(_ x: Value) -> Value {
        var product: Value = x
        for i in 1..<8 { product *= x + Value(i) }
        let y = x + 8
        let r = 1 / y, r2 = r * r
        // Stirling: (y − ½) log y − y + ½ log 2π + 1/(12y) − 1/(360y³) + 1/(1260y⁵) − 1/(1680y⁷)
        let c1: Value = 1.0 / 12, c3: Value = 1.0 / 360, c5: Value = 1.0 / 1260, c7: Value = 1.0 / 1680
        let inner: Value = c5 - r2 * c7
        let series: Value = r * (c1 - r2 * (c3 - r2 * inner))
        let halfLogTwoPi: Value = 0.918_938_533_204_672_74
        let stirling: Value = (y - 0.5) * log(y) - y + halfLogTwoPi
        return stirling + series - log(product)
    }

    /// ψ(x) = d/dx log Γ(x) for x > 0: the asymptotic series at x + 8, minus
    /// Σ 1/(x + i), i < 8 (as one quotient). Branch-free.
    @inlinable @inline(__always)
    public static func digamma(_ x: Value) -> Value {
        // p = Π (x + i), dp = p · Σ 1/(x + i), accumulated together.
        var p: Value = 1, dp: Value = 0
        for i in 0..<8 {
            let t = x + Value(i)
            dp = dp * t + p
            p *= t
        }
        let y = x + 8
        let r = 1 / y, r2 = r * r
        // log y − 1/(2y) − 1/(12y²) + 1/(120y⁴) − 1/(252y⁶) + 1/(240y⁸)
        let c2: Value = 1.0 / 12, c4: Value = 1.0 / 120, c6: Value = 1.0 / 252, c8: Value = 1.0 / 240
        let inner: Value = c6 - r2 * c8
        let series: Value = r2 * (c2 - r2 * (c4 - r2 * inner))
        let half: Value = 0.5
        return log(y) - half * r - series - dp / p
    }
}
