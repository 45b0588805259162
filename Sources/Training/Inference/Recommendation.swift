import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

// Recommendation with a model of interaction rows (Mult-VAE, Liang et al.
// 2018): a user's clicks go through the encoder (its posterior mean), the
// decoder's head 0 scores every item, and the items the user already has
// are left out of the ranking. Evaluation follows the paper's protocol
// (dawenl/vae_cf): each held-out user with at least 5 clicks has
// ⌊0.2·n⌋ of them, chosen at random (seeded, per user), held out; the
// rest are the fold-in the model reads; NDCG@100 (binary gains) and
// Recall@k = hits / min(k, held-out clicks) are averaged over those users.

/// A held-out user's clicks, split into what the model reads and what it must find.
public struct HeldOutUser: Equatable, Sendable {
    public var row: Int
    public var foldIn: [Int32]
    public var heldOut: [Int32]
}

public enum Recommendation {
    /// Users with fewer clicks keep them all as fold-in and are not scored
    /// (as the paper's preprocessing).
    public static let minimumClicks = 5
    public static let heldOutFraction = 0.2

    /// The fold-in/held-out split of every row of `set` (sparse or dense;
    /// an item is clicked where its value is positive), seeded per row.
    public static func split(_ set: ImageSet, seed: UInt64) -> [HeldOutUser] {
        (0..<set.count).map { r in
            let items = clickedItems(set, row: r)
            guard items.count >= minimumClicks else { return HeldOutUser(row: r, foldIn: items, heldOut: []) }
            let n = Int(heldOutFraction * Double(items.count))
            let order = RandomStream(seed: seed, domain: .recommendation, UInt32(truncatingIfNeeded: r)).permutation(items.count)
            let held = Set(order.prefix(n))
            return HeldOutUser(row: r, foldIn: items.indices.filter { !held.contains($0) }.map { items[$0] },
                               heldOut: items.indices.filter { held.contains($0) }.map { items[$0] })
        }
    }

    /// The items of row `r` with a positive value, in column order.
    public static func clickedItems(_ set: ImageSet, row r: Int) -> [Int32] {
        if let sparse = set.values.sparse {
            let (columns, values) = sparse.row(r)
            return zip(columns, values).filter { $0.1 > 0 }.map(\.0)
        }
        let d = set.shape.size
        var row = [Float](repeating: 0, count: d)
        row.withUnsafeMutableBufferPointer { set.values.convert(r * d, d, into: $0.baseAddress!) }
        return (0..<d).filter { row[$0] > 0 }.map { Int32($0) }
    }

    /// The rows of `set` with only these items' values (the fold-in), as a
    /// sparse set read as `set` is (its input normalization).
    public static func foldInSet(_ set: ImageSet, users: [HeldOutUser]) -> ImageSet {
        var triplets: [(row: Int32, column: Int32, value: Float)] = []
        let d = set.shape.size
        var row = [Float](repeating: 0, count: d)
        for (i, user) in users.enumerated() {
            row.withUnsafeMutableBufferPointer { set.values.convert(user.row * d, d, into: $0.baseAddress!) }
            for item in user.foldIn { triplets.append((Int32(i), item, row[Int(item)])) }
        }
        // The users' labels go with them: a conditional model (a covariate) encodes and decodes with them.
        var folded = ImageSet(shape: set.shape, values: SampleValues(sparse: SparseRows(rows: users.count, width: d, triplets: triplets)),
                              labels: set.labels.map { labels in users.map { labels[$0.row] } }, source: set.source, kind: set.kind)
        folded.labelNames = set.labelNames
        folded.inputNormalization = set.inputNormalization
        folded.standardization = set.standardization
        return folded
    }

    /// The k best items of each row of `scores` (B, D), best first, leaving
    /// out `exclude[b]` (and scores of −∞ or NaN); ties go to the lower index.
    /// A bounded heap of the k best so far: O(D log k) a row, not a sort of D.
    public static func top(_ k: Int, of scores: [Float], width d: Int, excluding exclude: [[Int32]]) -> [[Int32]] {
        exclude.indices.map { b in
            var s = Array(scores[(b * d) ..< ((b + 1) * d)])
            for item in exclude[b] { s[Int(item)] = -.infinity }
            // A strict total order on the candidates (no NaN among them).
            func better(_ i: Int, _ j: Int) -> Bool { s[i] != s[j] ? s[i] > s[j] : i < j }
            // A min-heap under `better`: the root is the worst item kept.
            var heap = [Int]()
            heap.reserveCapacity(k)
            func siftDown(_ start: Int) {
                var i = start
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var worst = i
                    if l < heap.count && better(heap[worst], heap[l]) { worst = l }
                    if r < heap.count && better(heap[worst], heap[r]) { worst = r }
                    if worst == i { return }
                    heap.swapAt(i, worst)
                    i = worst
                }
            }
            for i in 0..<d where s[i] > -.infinity && k > 0 {
                if heap.count < k {
                    heap.append(i)
                    var c = heap.count - 1
                    while c > 0, better(heap[(c - 1) / 2], heap[c]) {
                        heap.swapAt(c, (c - 1) / 2)
                        c = (c - 1) / 2
                    }
                } else if better(i, heap[0]) {
                    heap[0] = i
                    siftDown(0)
                }
            }
            return heap.sorted(by: better).map { Int32($0) }
        }
    }

    /// NDCG@k with binary gains: Σ_{i<k} [item i held out] / log₂(i + 2),
    /// over the ideal Σ_{i<min(k, n)} 1 / log₂(i + 2).
    public static func ndcg(_ ranked: [Int32], heldOut: Set<Int32>, k: Int) -> Double {
        guard !heldOut.isEmpty else { return 0 }
        var dcg = 0.0, ideal = 0.0
        for (i, item) in ranked.prefix(k).enumerated() where heldOut.contains(item) { dcg += 1 / log2(Double(i + 2)) }
        for i in 0..<min(k, heldOut.count) { ideal += 1 / log2(Double(i + 2)) }
        return dcg / ideal
    }

    /// Recall@k as Mult-VAE defines it: hits in the top k / min(k, n held out).
    public static func recall(_ ranked: [Int32], heldOut: Set<Int32>, k: Int) -> Double {
        guard !heldOut.isEmpty else { return 0 }
        let hits = ranked.prefix(k).filter { heldOut.contains($0) }.count
        return Double(hits) / Double(min(k, heldOut.count))
    }
}

/// NDCG@100, Recall@20 and Recall@50 averaged over the evaluated users.
public struct RankingMetrics: Sendable, Equatable {
    public var users: Int
    public var ndcg100: Double
    public var recall20: Double
    public var recall50: Double

    /// From per-user values (in user order: the sum does not depend on how
    /// the users were shared over ranks).
    init(_ perUser: [(Double, Double, Double)]) {
        users = perUser.count
        let n = Double(max(perUser.count, 1))
        ndcg100 = perUser.reduce(0) { $0 + $1.0 } / n
        recall20 = perUser.reduce(0) { $0 + $1.1 } / n
        recall50 = perUser.reduce(0) { $0 + $1.2 } / n
    }
}

extension LoadedModel {
    /// Item scores (B, D) of these rows: the decoder's head 0 at the posterior mean.
    public func itemScores(_ set: ImageSet, _ range: Range<Int>) -> Tensor {
        let condition = condition(of: set, range)
        return decode(posteriorMean(set.batch(range), condition: condition), condition: condition).location
    }

    /// The top `k` items of every row of `set` the model has not seen
    /// (items with a positive value are left out), rows split over the
    /// ranks in blocks; every rank gets all of them, with their scores.
    public func recommendations(_ set: ImageSet, k: Int, communicator: Communicator, batch: Int = 256)
        throws -> (items: [[Int32]], scores: [[Float]])
    {
        let n = set.count, d = set.shape.size
        let block = ShardPlan.block(count: n, rank: communicator.rank, size: communicator.size)
        var items = [Float](repeating: 0, count: n * k), scores = [Float](repeating: 0, count: n * k)
        var found = [Float](repeating: 0, count: n)
        var start = block.lowerBound
        while start < block.upperBound {
            let end = min(start + batch, block.upperBound)
            let s = itemScores(set, start..<end).scalars
            let seen = (start..<end).map { Recommendation.clickedItems(set, row: $0) }
            let best = Recommendation.top(k, of: s, width: d, excluding: seen)
            for (b, list) in best.enumerated() {
                let r = start + b
                found[r] = Float(list.count)
                for (i, item) in list.enumerated() {
                    items[r * k + i] = Float(item)
                    scores[r * k + i] = s[b * d + Int(item)]
                }
            }
            start = end
        }
        try items.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        try scores.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        try found.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        return ((0..<n).map { r in (0..<Int(found[r])).map { Int32(items[r * k + $0]) } },
                (0..<n).map { r in Array(scores[(r * k) ..< (r * k + Int(found[r]))]) })
    }

    /// The paper's protocol on held-out users `set`: the model's metrics and
    /// those of ranking by popularity (`popularity[j]`: the training users
    /// who clicked item j), over the users with held-out clicks.
    public func rankingMetrics(_ set: ImageSet, seed: UInt64, popularity: [Double], communicator: Communicator,
                               batch: Int = 256) throws -> (model: RankingMetrics, popularity: RankingMetrics) {
        let users = Recommendation.split(set, seed: seed).filter { !$0.heldOut.isEmpty }
        let folded = Recommendation.foldInSet(set, users: users)
        let n = users.count, d = set.shape.size
        let block = ShardPlan.block(count: n, rank: communicator.rank, size: communicator.size)
        // Per user: model NDCG, R@20, R@50, then popularity's.
        var values = [Double](repeating: 0, count: n * 6)
        let popular = (0..<d).sorted { popularity[$0] != popularity[$1] ? popularity[$0] > popularity[$1] : $0 < $1 }
        var start = block.lowerBound
        while start < block.upperBound {
            let end = min(start + batch, block.upperBound)
            let s = itemScores(folded, start..<end).scalars
            let ranked = Recommendation.top(100, of: s, width: d, excluding: users[start..<end].map(\.foldIn))
            for (b, list) in ranked.enumerated() {
                let u = users[start + b], held = Set(u.heldOut), seen = Set(u.foldIn)
                let byPopularity = Array(popular.lazy.filter { !seen.contains(Int32($0)) }.prefix(100).map { Int32($0) })
                let o = (start + b) * 6
                values[o] = Recommendation.ndcg(list, heldOut: held, k: 100)
                values[o + 1] = Recommendation.recall(list, heldOut: held, k: 20)
                values[o + 2] = Recommendation.recall(list, heldOut: held, k: 50)
                values[o + 3] = Recommendation.ndcg(byPopularity, heldOut: held, k: 100)
                values[o + 4] = Recommendation.recall(byPopularity, heldOut: held, k: 20)
                values[o + 5] = Recommendation.recall(byPopularity, heldOut: held, k: 50)
            }
            start = end
        }
        try values.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        return (RankingMetrics((0..<n).map { (values[$0 * 6], values[$0 * 6 + 1], values[$0 * 6 + 2]) }),
                RankingMetrics((0..<n).map { (values[$0 * 6 + 3], values[$0 * 6 + 4], values[$0 * 6 + 5]) }))
    }
}

extension ImageSet {
    /// For each column, the number of rows with a positive value (item popularity).
    public var columnPopularity: [Double] {
        let d = shape.size
        var counts = [Double](repeating: 0, count: d)
        if let sparse = values.sparse {
            for (c, v) in zip(sparse.columns, sparse.values) where v > 0 { counts[Int(c)] += 1 }
            return counts
        }
        values.forEachChunk { offset, chunk in
            for (i, v) in chunk.enumerated() where v > 0 { counts[(offset + i) % d] += 1 }
        }
        return counts
    }
}
