/// A discrete distribution over n symbols quantised to integer frequencies
/// that sum to 2^precision, every one at least 1, as a cumulative table:
/// symbol s occupies [starts[s], starts[s + 1]).
///
/// From a CDF F (F(0) = 0 ≤ F(1) ≤ … ≤ F(n) = 1, F(s) = P(X < s)):
/// start(s) = max(start(s − 1) + 1, ⌊F(s)·(2^precision − n)⌋ + s). The
/// floor keeps the table a function of F alone, so encoder and decoder
/// agree whenever they compute the same F; the max keeps it increasing even
/// if F were not (a rounding step backwards), and start(s) ≤ 2^precision −
/// n + s keeps room for the symbols after s.
public struct QuantizedDistribution: Equatable, Sendable {
    public let precision: Int
    /// n + 1 cumulative frequencies: starts[0] = 0, starts[n] = 2^precision.
    public let starts: [UInt32]

    public var symbolCount: Int { starts.count - 1 }

    /// `cdf[s]` = P(X < s) for s = 0…n (the first 0, the last 1; others clamped to [0, 1]).
    public init(cdf: [Double], precision: Int) {
        let n = cdf.count - 1
        precondition(n >= 1 && (1...31).contains(precision) && 1 << precision > n,
                     "\(n) symbols at \(precision) bits: every symbol needs a frequency of at least 1")
        self.precision = precision
        let total = UInt64(1) << UInt64(precision)
        let spread = Double(total - UInt64(n))
        var starts = [UInt32](repeating: 0, count: n + 1)
        var previous: UInt64 = 0
        for s in 1..<n {
            let f = Swift.min(Swift.max(cdf[s], 0), 1)
            var start = UInt64((f * spread).rounded(.down)) + UInt64(s)
            start = Swift.max(start, previous + 1)
            start = Swift.min(start, total - UInt64(n - s))
            starts[s] = UInt32(start)
            previous = start
        }
        starts[n] = UInt32(truncatingIfNeeded: total)
        self.starts = starts
    }

    @inline(__always)
    public func start(_ symbol: Int) -> UInt32 { starts[symbol] }

    @inline(__always)
    public func frequency(_ symbol: Int) -> UInt32 { starts[symbol + 1] &- starts[symbol] }

    /// The symbol whose range holds cumulative frequency `cf` (binary search).
    public func symbol(at cf: UInt32) -> Int {
        var lo = 0, hi = symbolCount   // starts[lo] ≤ cf < starts[hi]
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if starts[mid] <= cf { lo = mid } else { hi = mid }
        }
        return lo
    }
}

extension ANSMessage {
    /// Encodes `symbol` under `distribution`.
    public mutating func push(_ symbol: Int, _ distribution: QuantizedDistribution) {
        push(start: distribution.start(symbol), frequency: distribution.frequency(symbol),
             precision: distribution.precision)
    }

    /// Decodes a symbol under `distribution`.
    public mutating func pop(_ distribution: QuantizedDistribution) throws -> Int {
        let s = distribution.symbol(at: peek(precision: distribution.precision))
        try pop(start: distribution.start(s), frequency: distribution.frequency(s), precision: distribution.precision)
        return s
    }
}
