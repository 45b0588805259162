import CKernels
import Collectives
import Foundation
import VAEModel

/// How `--reproducible` adds the micro-shards' gradients so that the sum
/// does not depend on how the micro-shards are grouped into ranks.
public enum ExactReduction: String, Codable, CaseIterable, Sendable {
    /// Each micro-shard's gradient in 64-bit fixed point, with one exponent
    /// per tensor agreed by a max-reduction, summed by an integer allreduce
    /// (exact and associative, so any grouping gives the same integers).
    case fixedPoint = "fixed-point"
    /// The micro-shards' gradients added in one fixed binary tree: each rank
    /// adds the subtree of its own micro-shards, an allgather brings every
    /// rank the np subtree sums, and every rank adds those in the tree's
    /// order. Needs V and np to be powers of two.
    case tree

    /// Whether `v` micro-shards suit this reduction (the tree: a power of two).
    public func supports(microShards v: Int) -> Bool { self == .fixedPoint || ExactReduction.isPowerOfTwo(v) }

    /// Which numbers of ranks give the same bytes: the divisors of V (and,
    /// for the tree, powers of two).
    public func validWorldSizes(microShards v: Int) -> [Int] {
        (1...max(v, 1)).filter { np in v % np == 0 && supports(microShards: np) }
    }

    static func isPowerOfTwo(_ n: Int) -> Bool { n > 0 && n & (n - 1) == 0 }
}

/// The gradient half of `--reproducible`'s step. A step's global batch is cut
/// into V micro-shards whose shapes do not depend on the number of ranks; rank
/// r computes micro-shards [r·V/np, (r+1)·V/np), each alone, and leaves each
/// one's gradient here (`capture`). `reduce` then writes into the optimizer's
/// buffer the sum of all V gradients, bit for bit the same for every np that
/// divides V.
final class ExactGradientSum {
    let layout: ParameterLayout
    let method: ExactReduction
    let microShards: Int
    let communicator: Communicator
    /// Micro-shards of this rank: their gradients (P floats each), in order.
    let localShards: Range<Int>
    private var gradients: [[Float]]
    private var captured: [Bool]
    private var nonFinite: [Bool]
    private var fixed: [Int64] = []
    private var gathered: [Float] = []

    init(layout: ParameterLayout, method: ExactReduction, microShards: Int, communicator: Communicator) {
        precondition(microShards % communicator.size == 0, "the number of ranks must divide the micro-shards")
        self.layout = layout
        self.method = method
        self.microShards = microShards
        self.communicator = communicator
        let perRank = microShards / communicator.size
        localShards = communicator.rank * perRank ..< (communicator.rank + 1) * perRank
        gradients = Array(repeating: [Float](repeating: 0, count: layout.count), count: perRank)
        captured = Array(repeating: false, count: perRank)
        nonFinite = captured
    }

    /// Starts a step: no micro-shard has a gradient yet (an empty one counts as zero).
    func begin() {
        for i in captured.indices { captured[i] = false; nonFinite[i] = false }
    }

    /// Keeps micro-shard `shard`'s gradient (the first P floats at `gradient`).
    func capture(_ gradient: UnsafePointer<Float>, shard: Int, nonFinite bad: Bool) {
        let i = shard - localShards.lowerBound
        precondition(localShards.contains(shard), "micro-shard \(shard) is not this rank's")
        gradients[i].withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: gradient, count: layout.count) }
        captured[i] = true
        nonFinite[i] = bad
    }

    /// Whether a captured gradient held an infinity or a NaN (every rank
    /// learns it in the step's small reduction before any update).
    var anyNonFinite: Bool { zip(captured, nonFinite).contains { $0 && $1 } }

    /// The sum of every micro-shard's gradient, into `output` (P floats).
    /// Returns false, on every rank, when a gradient anywhere is not finite
    /// (fixed point: the exponents cannot be agreed; `output` is untouched).
    func reduce(into output: UnsafeMutablePointer<Float>) throws -> Bool {
        switch method {
        case .fixedPoint: return try reduceFixedPoint(into: output)
        case .tree: try reduceTree(into: output); return true
        }
    }

    /// Exponents: tensor t's values are scaled by 2^(50 − k_t), where 2^k_t
    /// bounds its largest magnitude over every micro-shard, so each scaled
    /// value is below 2^50 in magnitude (exactly convertible) and V of them
    /// fit an Int64 for V up to 2^13. What is lost is below 2^−50 of the
    /// tensor's largest gradient; fp32 itself keeps 2^−24 of each value.
    private func reduceFixedPoint(into output: UnsafeMutablePointer<Float>) throws -> Bool {
        let entries = layout.entries
        var maxima = [Double](repeating: 0, count: entries.count + 1)
        for (i, gradient) in gradients.enumerated() where captured[i] {
            gradient.withUnsafeBufferPointer { g in
                for (t, e) in entries.enumerated() where e.count > 0 {
                    maxima[t] = max(maxima[t], Double(ck_max_abs(g.baseAddress! + e.offset, e.count)))
                }
            }
        }
        maxima[entries.count] = anyNonFinite ? 1 : 0
        try communicator.allreduceMax(&maxima)
        if maxima[entries.count] != 0 { return false }
        if fixed.count != layout.count { fixed = [Int64](repeating: 0, count: layout.count) }
        let scales = maxima.prefix(entries.count).map { m -> Double in
            m > 0 ? Double(sign: .plus, exponent: 50 - frexp(m).1, significand: 1) : 1
        }
        fixed.withUnsafeMutableBufferPointer { acc in
            acc.update(repeating: 0)
            for (i, gradient) in gradients.enumerated() where captured[i] {
                gradient.withUnsafeBufferPointer { g in
                    for (t, e) in entries.enumerated() where e.count > 0 {
                        ck_fixed_point_accumulate(g.baseAddress! + e.offset, e.count, scales[t], acc.baseAddress! + e.offset)
                    }
                }
            }
        }
        try communicator.allreduceSum(&fixed)
        fixed.withUnsafeBufferPointer { acc in
            for (t, e) in entries.enumerated() where e.count > 0 {
                ck_fixed_point_to_float(acc.baseAddress! + e.offset, e.count, 1 / scales[t], output + e.offset)
            }
        }
        return true
    }

    /// The tree: leaves are the V micro-shards; level by level, node i of
    /// width w is node i plus node i + w. A rank's micro-shards are a whole
    /// subtree (V/np and np powers of two, rank r holding leaves r·V/np …),
    /// so it adds them alone; the np subtree sums are then added in the same
    /// pattern. An uncaptured (empty) micro-shard is a zero leaf.
    private func reduceTree(into output: UnsafeMutablePointer<Float>) throws {
        let p = layout.count, np = communicator.size
        for i in captured.indices where !captured[i] {
            gradients[i].withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        }
        Self.addTree(&gradients, count: p)
        if np == 1 {
            gradients[0].withUnsafeBufferPointer { output.update(from: $0.baseAddress!, count: p) }
            return
        }
        if gathered.count != p * np { gathered = [Float](repeating: 0, count: p * np) }
        let rank = communicator.rank
        gathered.withUnsafeMutableBufferPointer { all in
            gradients[0].withUnsafeBufferPointer { (all.baseAddress! + rank * p).update(from: $0.baseAddress!, count: p) }
        }
        try gathered.withUnsafeMutableBufferPointer { try communicator.allgather($0, counts: Array(repeating: p, count: np)) }
        gathered.withUnsafeMutableBufferPointer { all in
            var width = 1
            while width < np {
                for i in stride(from: 0, to: np, by: 2 * width) {
                    ck_add_in_place(all.baseAddress! + i * p, all.baseAddress! + (i + width) * p, p)
                }
                width *= 2
            }
            output.update(from: all.baseAddress!, count: p)
        }
    }

    /// Adds the leaves pairwise in place (a power-of-two count); the sum ends in leaf 0.
    static func addTree(_ leaves: inout [[Float]], count: Int) {
        var width = 1
        while width < leaves.count {
            for i in stride(from: 0, to: leaves.count, by: 2 * width) {
                let other = leaves[i + width]
                leaves[i].withUnsafeMutableBufferPointer { a in
                    other.withUnsafeBufferPointer { b in ck_add_in_place(a.baseAddress!, b.baseAddress!, count) }
                }
            }
            width *= 2
        }
    }
}

/// Sums of small per-micro-shard rows (sample counts, loss terms, KL per
/// dimension) that every rank learns exactly and adds in micro-shard order:
/// each rank writes its own micro-shards' rows into a V-row matrix of zeros,
/// a sum-allreduce fills in the rest (x + 0 is exact), and every rank adds
/// the rows 0, 1, …, V − 1 in turn.
struct MicroShardRows {
    let width: Int
    var rows: [Float]

    init(microShards: Int, width: Int) {
        self.width = width
        rows = [Float](repeating: 0, count: microShards * width)
    }

    mutating func set(_ shard: Int, _ values: [Float]) {
        precondition(values.count == width)
        rows.replaceSubrange(shard * width ..< (shard + 1) * width, with: values)
    }

    /// Every rank's rows, then the column sums in micro-shard order.
    mutating func reduced(_ communicator: Communicator, extra: inout [Float]) throws -> [Float] {
        var all = rows + extra
        try communicator.allreduceSum(&all)
        extra = Array(all[rows.count...])
        rows = Array(all[..<rows.count])
        var sums = [Float](repeating: 0, count: width)
        for v in 0 ..< rows.count / max(width, 1) {
            for j in 0..<width { sums[j] += rows[v * width + j] }
        }
        return sums
    }
}
