import Foundation
import XCTest
import Datasets
import TensorCore
@testable import Training

/// Mult-VAE's ranking metrics and the held-out split (dawenl/vae_cf's definitions).
final class RecommendationTests: XCTestCase {
    func testMetricsByHand() {
        // Ranked 3, 1, 2; held out {1, 5}: DCG = 1/log2(3); ideal = 1 + 1/log2(3).
        let held: Set<Int32> = [1, 5]
        XCTAssertEqual(Recommendation.ndcg([3, 1, 2], heldOut: held, k: 100), (1 / log2(3.0)) / (1 + 1 / log2(3.0)), accuracy: 1e-12)
        XCTAssertEqual(Recommendation.ndcg([1, 5, 2], heldOut: held, k: 100), 1, accuracy: 1e-12)
        // Only the top k count; recall divides by min(k, held out).
        XCTAssertEqual(Recommendation.ndcg([3, 1], heldOut: held, k: 1), 0)
        XCTAssertEqual(Recommendation.recall([3, 1, 2], heldOut: held, k: 20), 0.5)
        XCTAssertEqual(Recommendation.recall([1, 3], heldOut: held, k: 1), 1)
        XCTAssertEqual(Recommendation.recall([3, 1], heldOut: held, k: 1), 0)
    }

    func testTopLeavesOutSeenItemsAndBreaksTiesByIndex() {
        let scores: [Float] = [0.5, 2, 2, -1, 3]
        XCTAssertEqual(Recommendation.top(3, of: scores, width: 5, excluding: [[4]]), [[1, 2, 0]])
        XCTAssertEqual(Recommendation.top(10, of: scores, width: 5, excluding: [[0, 1, 2]]), [[4, 3]])
    }

    func testTopMatchesAFullSort() {
        // Many ties (scores on a coarse grid), −∞ and NaN (never ranked), several rows and k from 0 past D.
        var rng = SystemRandomNumberGenerator()
        let d = 300
        for k in [0, 1, 7, 100, 299, 300, 400] {
            let rows = 3
            let scores: [Float] = (0..<(rows * d)).map { _ in
                switch Int.random(in: 0..<50, using: &rng) {
                case 0: return -.infinity
                case 1: return .nan
                default: return Float(Int.random(in: -20...20, using: &rng)) / 4
                }
            }
            let exclude: [[Int32]] = (0..<rows).map { _ in (0..<10).map { _ in Int32.random(in: 0..<Int32(d), using: &rng) } }
            let expected: [[Int32]] = (0..<rows).map { b in
                var s = Array(scores[(b * d) ..< ((b + 1) * d)])
                for item in exclude[b] { s[Int(item)] = -.infinity }
                let candidates = (0..<d).filter { s[$0] > -.infinity }
                return candidates.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }.prefix(k).map { Int32($0) }
            }
            XCTAssertEqual(Recommendation.top(k, of: scores, width: d, excluding: exclude), expected, "k \(k)")
        }
    }

    /// Users with 5 or more clicks hold out ⌊20 %⌋, seeded per user; the
    /// split does not depend on which other users are in the set.
    func testHeldOutSplit() {
        let rows = SparseRows(rows: 3, width: 30, triplets: (0..<12).map { (0, Int32($0), 1) } + (0..<4).map { (1, Int32($0), 1) }
                                                            + (0..<26).map { (2, Int32($0), 2) })
        let set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: 30), values: SampleValues(sparse: rows))
        let users = Recommendation.split(set, seed: 3)
        XCTAssertEqual(users.map(\.heldOut.count), [2, 0, 5])
        XCTAssertEqual(users.map(\.foldIn.count), [10, 4, 21])
        for u in users { XCTAssertTrue(Set(u.foldIn).isDisjoint(with: u.heldOut)) }
        XCTAssertEqual(Recommendation.split(set, seed: 3), users)
        XCTAssertNotEqual(Recommendation.split(set, seed: 4).map(\.heldOut), users.map(\.heldOut))
        let folded = Recommendation.foldInSet(set, users: [users[2]])
        XCTAssertEqual(Recommendation.clickedItems(folded, row: 0), users[2].foldIn)
        XCTAssertEqual(set.columnPopularity[0], 3)
        XCTAssertEqual(set.columnPopularity[20], 1)
    }
}

final class PlacementTests: XCTestCase {
    func testAffinityLists() {
        XCTAssertEqual(Placement.parse("0-3,8,10-11")?.cores, [0, 1, 2, 3, 8, 10, 11])
        XCTAssertEqual(Placement.parse(" 5\n")?.cores, [5])
        XCTAssertNil(Placement.parse("3-1"))
        XCTAssertNil(Placement.parse(""))
        XCTAssertEqual(Placement(cores: [0, 1, 2, 3, 8, 10, 11]).summary, "cores 0-3,8,10-11")
        XCTAssertEqual(Placement(cores: [4]).summary, "core 4")
        XCTAssertNotNil(Placement.current())
        let error = SharedCoresError(rank: 1, threads: 2, placement: Placement(cores: [3]))
        XCTAssertTrue(error.description.hasPrefix("--threads 2: rank 1 may run only on core 3"), error.description)
        XCTAssertTrue(error.description.contains("mpirun --map-by slot:PE=2 --bind-to core"), error.description)
    }

}

/// Which evaluation `--keep-best` and `--early-stop` count as the best.
final class EvaluationProgressTests: XCTestCase {
    /// With ranked users, the best evaluation is the one of highest NDCG@100,
    /// whatever its test loss; without, the one of lowest test loss. A sidecar
    /// written before `bestNDCG` existed still decodes.
    func testBestEvaluationByNDCGWhenUsersAreRanked() throws {
        var ranked = EvaluationProgress()
        XCTAssertTrue(ranked.record(testLoss: 300, ndcg: 0.30, step: 10))
        XCTAssertTrue(ranked.record(testLoss: 310, ndcg: 0.35, step: 20))    // worse loss, better NDCG: best
        XCTAssertFalse(ranked.record(testLoss: 250, ndcg: 0.34, step: 30))   // better loss, worse NDCG: not
        XCTAssertEqual(ranked.bestStep, 20)
        XCTAssertEqual(ranked.bestTestLoss, 310)
        XCTAssertEqual(ranked.evaluationsWithoutImprovement, 1)
        XCTAssertEqual(ranked.bestSummary, "NDCG@100 0.3500")
        XCTAssertEqual(ranked.criterion, "the held-out users' NDCG@100")

        var plain = EvaluationProgress()
        XCTAssertTrue(plain.record(testLoss: 300, step: 10))
        XCTAssertFalse(plain.record(testLoss: 301, step: 20))
        XCTAssertTrue(plain.record(testLoss: 299.5, step: 30))
        XCTAssertEqual(plain.bestStep, 30)
        XCTAssertEqual(plain.bestSummary, "test loss 299.500")

        let old = #"{"bestStep": 7, "bestTestLoss": 91.5, "evaluationsWithoutImprovement": 2}"#
        let decoded = try JSONDecoder().decode(EvaluationProgress.self, from: Data(old.utf8))
        XCTAssertNil(decoded.bestNDCG)
        XCTAssertEqual(decoded.bestStep, 7)
    }
}
