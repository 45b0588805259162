/// A range asymmetric numeral systems (rANS) message, as a stack: a 64-bit
/// head and a tail of 32-bit words (Duda 2013; Giesen's `rans64.h`, as
/// craystack uses it). `push` encodes a symbol given its quantised start
/// and frequency at `precision` bits; `peek`/`pop` decode the last symbol
/// pushed. The head stays in [L, L·2^32) with L = 2^31, so precisions up to
/// 31 bits work and each renormalisation moves exactly one word.
///
/// Bits-back coding pops symbols it never pushed (the posterior's latent):
/// that reads bits from the message, which is why a chain starts with some
/// (see `ANSMessage(seedWords:)`).
public struct ANSMessage: Equatable, Sendable {
    public static let lowerBound: UInt64 = 1 << 31
    public var head: UInt64
    /// Words below the head, oldest first; the last is the next one read back.
    public var tail: [UInt32]

    /// An empty message: head at the lower bound, no words.
    public init() {
        head = Self.lowerBound
        tail = []
    }

    public init(head: UInt64, tail: [UInt32]) {
        precondition(head >= Self.lowerBound && head >> 32 < Self.lowerBound, "an rANS head lies in [2^31, 2^63)")
        self.head = head
        self.tail = tail
    }

    /// Encodes a symbol occupying [start, start + frequency) of 2^precision.
    @inline(__always)
    public mutating func push(start: UInt32, frequency: UInt32, precision: Int) {
        precondition(frequency > 0 && (1...31).contains(precision) && UInt64(start) + UInt64(frequency) <= 1 << precision,
                     "rANS symbol [\(start), \(start) + \(frequency)) at \(precision) bits")
        let limit = ((Self.lowerBound >> UInt64(precision)) << 32) * UInt64(frequency)
        if head >= limit {
            tail.append(UInt32(truncatingIfNeeded: head))
            head >>= 32
        }
        head = ((head / UInt64(frequency)) << UInt64(precision)) + head % UInt64(frequency) + UInt64(start)
    }

    /// The cumulative frequency the next symbol to pop lies at: a value in
    /// [0, 2^precision) that names it.
    @inline(__always)
    public func peek(precision: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: head & ((1 << UInt64(precision)) - 1))
    }

    /// Removes the symbol `peek` named, given its start and frequency.
    /// Throws when the message runs out of words (a truncated or damaged
    /// stream, or too few seed words).
    @inline(__always)
    public mutating func pop(start: UInt32, frequency: UInt32, precision: Int) throws {
        let cf = head & ((1 << UInt64(precision)) - 1)
        guard UInt64(start) <= cf && cf < UInt64(start) + UInt64(frequency) else {
            throw ANSError.inconsistentSymbol
        }
        head = UInt64(frequency) * (head >> UInt64(precision)) + cf - UInt64(start)
        if head < Self.lowerBound {
            guard let word = tail.popLast() else { throw ANSError.exhausted }
            head = head << 32 | UInt64(word)
        }
    }

    /// Bits in the message: 64 for the head and 32 per word.
    public var bitCount: Int { 64 + 32 * tail.count }

    /// The message as words: the tail, then the head's low and high words.
    public var words: [UInt32] {
        tail + [UInt32(truncatingIfNeeded: head), UInt32(truncatingIfNeeded: head >> 32)]
    }

    /// The message `words` wrote.
    public init(words: [UInt32]) throws {
        guard words.count >= 2 else { throw ANSError.exhausted }
        let head = UInt64(words[words.count - 1]) << 32 | UInt64(words[words.count - 2])
        guard head >= Self.lowerBound && head >> 32 < Self.lowerBound else { throw ANSError.badHead }
        self.init(head: head, tail: Array(words.dropLast(2)))
    }
}

public enum ANSError: Error, Equatable, CustomStringConvertible {
    /// A pop needed a word the message does not have.
    case exhausted
    /// A symbol popped with a range that does not hold the peeked value.
    case inconsistentSymbol
    /// A stored head outside [2^31, 2^63).
    case badHead

    public var description: String {
        switch self {
        case .exhausted: return "the coded stream ended early"
        case .inconsistentSymbol: return "the coded stream does not decode consistently"
        case .badHead: return "the coded stream's final state is out of range"
        }
    }
}
