import Foundation
import XCTest
import TestSupport
import Artifacts
import Collectives
import Datasets
import TensorCore
@testable import Training
import VAEModel

/// The pieces of `--reproducible` that one process can check: the exact
/// sums (the multi-rank tests check the same bytes at np 1, 2 and 4), the
/// micro-shards and their noise, and `vae-mpi compare`.
final class ReproducibleTests: XCTestCase {
    let layout = ParameterLayout([("a", [3, 5]), ("empty", [0]), ("b", [7])])

    /// V = 8 micro-shards' gradients with magnitudes within 2^20 of each
    /// tensor's largest, so that fixed point holds each value exactly.
    func shards(seed: UInt64, range: Float = 1) -> [[Float]] {
        (0..<8).map { v in
            let u = RandomStream(seed: seed, domain: .sampling, UInt32(v)).uniforms(count: 2 * layout.count)
            return (0..<layout.count).map { i in
                let sign: Float = u[2 * i] < 0.5 ? -1 : 1
                return sign * range * Float(pow(2.0, -20.0 * Double(u[2 * i + 1])))
            }
        }
    }

    func reduce(_ gradients: [[Float]], _ method: ExactReduction, captured: Set<Int>? = nil) throws -> [Float]? {
        let exact = ExactGradientSum(layout: layout, method: method, microShards: 8, communicator: LocalCommunicator())
        exact.begin()
        for (v, g) in gradients.enumerated() where captured?.contains(v) ?? true {
            g.withUnsafeBufferPointer { exact.capture($0.baseAddress!, shard: v, nonFinite: !$0.allSatisfy(\.isFinite)) }
        }
        var out = [Float](repeating: .nan, count: layout.count)
        let ok = try out.withUnsafeMutableBufferPointer { try exact.reduce(into: $0.baseAddress!) }
        return ok ? out : nil
    }

    /// Fixed point gives the correctly rounded exact sum (each value and the
    /// sum are exact integers; one rounding to Float at the end), whatever
    /// the order: the property that makes it independent of the grouping.
    func testFixedPointIsTheRoundedExactSumInAnyOrder() throws {
        for (seed, range) in [(UInt64(1), Float(1)), (2, 3e-30), (3, 7e20)] {
            let g = shards(seed: seed, range: range)
            let sum = try XCTUnwrap(try reduce(g, .fixedPoint))
            for i in 0..<layout.count {
                let exact = g.reduce(0.0) { $0 + Double($1[i]) }   // exact: 8 floats within 2^20 of each other
                XCTAssertEqual(sum[i].bitPattern, Float(exact).bitPattern, "element \(i), range \(range)")
            }
            let reversed = try XCTUnwrap(try reduce(Array(g.reversed()), .fixedPoint))
            XCTAssertEqual(reversed.map(\.bitPattern), sum.map(\.bitPattern))
        }
        // Sequential float addition is not exact: it differs somewhere (the reason for all this).
        let g = shards(seed: 1)
        let sequential = (0..<layout.count).map { i in g.reduce(Float(0)) { $0 + $1[i] } }
        let sum = try XCTUnwrap(try reduce(g, .fixedPoint))
        XCTAssertNotEqual(sequential.map(\.bitPattern), sum.map(\.bitPattern))
    }

    /// The tree adds in one fixed pattern; an empty micro-shard is a zero leaf.
    func testTreeAddsInItsFixedOrder() throws {
        let g = shards(seed: 4)
        let sum = try XCTUnwrap(try reduce(g, .tree))
        for i in 0..<layout.count {
            let x = g.map { $0[i] }
            let expected = ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]))
            XCTAssertEqual(sum[i].bitPattern, expected.bitPattern, "element \(i)")
        }
        let partial = try XCTUnwrap(try reduce(g, .tree, captured: [0, 1, 2]))
        for i in 0..<layout.count {
            let x = g.map { $0[i] }
            XCTAssertEqual(partial[i].bitPattern, ((x[0] + x[1]) + (x[2] + 0)).bitPattern)
        }
    }

    func testNonFiniteGradientsAreReported() throws {
        var g = shards(seed: 5)
        g[3][4] = .infinity
        XCTAssertNil(try reduce(g, .fixedPoint))
        let zeros = [[Float]](repeating: [Float](repeating: 0, count: layout.count), count: 8)
        XCTAssertEqual(try reduce(zeros, .fixedPoint), [Float](repeating: 0, count: layout.count))
    }

    func testValidWorldSizes() {
        XCTAssertEqual(ExactReduction.fixedPoint.validWorldSizes(microShards: 8), [1, 2, 4, 8])
        XCTAssertEqual(ExactReduction.fixedPoint.validWorldSizes(microShards: 12), [1, 2, 3, 4, 6, 12])
        XCTAssertEqual(ExactReduction.tree.validWorldSizes(microShards: 12), [1, 2, 4])
    }

    /// The rows of terms: each micro-shard's row in its place, summed in order.
    func testMicroShardRowsSumInOrder() throws {
        var rows = MicroShardRows(microShards: 4, width: 2)
        rows.set(2, [1e8, 1])
        rows.set(0, [1, 2])
        rows.set(1, [-1e8, 3])
        var extra: [Float] = [1]
        let sums = try rows.reduced(LocalCommunicator(), extra: &extra)
        XCTAssertEqual(sums, [((1 + -1e8) + 1e8) + 0, 6])
        XCTAssertEqual(extra, [1])
    }

    // MARK: - A reproducible run in one process

    func trainer(_ dir: String, reproducible: Bool = true, seed: UInt64 = 1, accumulate: Int = 1) throws -> Trainer<MLPVAE> {
        var c = TrainingConfiguration()
        c.runDirectory = dir
        c.epochs = 2
        c.batchSize = 32
        c.architecture = .mlp(.init(hiddenSize: 16, latentSize: 2))
        c.logEvery = 1
        c.reproducible = reproducible
        c.seed = seed
        c.accumulate = accumulate
        let data = DataSplits(train: barsDataset(count: 101, seed: 1), test: barsDataset(count: 37, seed: 2))
        guard case .mlp(let options) = c.architecture else { throw XCTSkip("an MLP configuration") }
        return try Trainer(options, configuration: c, data: data, communicator: LocalCommunicator(),
                           console: Console(rank: 0, forceQuiet: true), backend: cpu)
    }

    /// Global batches of the one-rank plan (4 steps of 32, 32, 32, 5); the
    /// micro-shards cover each batch; the noise of an image does not depend
    /// on which micro-shard (or rank) draws it.
    func testMicroShardsAndTheirNoise() throws {
        let t = try trainer(try temporaryDirectory() + "/run")
        XCTAssertEqual(t.stepsPerEpoch, 4)
        let order = t.data.order(epoch: 1)
        let global = t.data.indices(stepInEpoch: 3, order: order)
        XCTAssertEqual(global.count, 5)
        let pieces = (0..<8).map { t.data.microShard($0, of: global.count) }
        XCTAssertEqual(pieces.map(\.count).reduce(0, +), 5)
        XCTAssertEqual(pieces.first?.lowerBound, 0)
        XCTAssertEqual(pieces.last?.upperBound, 5)
        let all = t.data.sampleNoise(global, latentSize: 2, step: 7)
        let one = t.data.sampleNoise([global[3]], latentSize: 2, step: 7)
        XCTAssertEqual(Array(all.scalars[6..<8]), one.scalars)
        XCTAssertNotEqual(t.data.sampleNoise([global[3]], latentSize: 2, step: 8).scalars, one.scalars)
    }

    /// Same seed: `compare` finds the runs bitwise equal; another seed or an
    /// edited metrics value: it names the first difference.
    func testCompareNamesTheFirstDifference() throws {
        let root = try temporaryDirectory()
        _ = try trainer(root + "/a").run()
        _ = try trainer(root + "/b").run()
        _ = try trainer(root + "/c", seed: 2).run()
        let same = try RunComparison(root + "/a", root + "/b")
        XCTAssertTrue(same.equal, "\(same.report)")
        XCTAssertEqual(same.commonSteps, [4, 8])
        XCTAssertEqual(same.report.last, "\(root)/a and \(root)/b are bitwise equal")
        let other = try RunComparison(root + "/a", root + "/c")
        XCTAssertFalse(other.equal)
        XCTAssertTrue(other.checkpointDifference?.hasPrefix("step 4: tensor fc1.weight differs in ") ?? false,
                      "\(String(describing: other.checkpointDifference))")
        XCTAssertTrue(other.metricsDifference?.hasPrefix("line 1 (train, step 1): ") ?? false,
                      "\(String(describing: other.metricsDifference))")
        // One edited value in the fourth line.
        var lines = try Files.readText(root + "/b/metrics.jsonl").split(separator: "\n").map(String.init)
        lines[3] = lines[3].replacingOccurrences(of: "\"epoch\":1", with: "\"epoch\":9")
            .replacingOccurrences(of: "\"epoch\": 1", with: "\"epoch\": 9")
        try Files.writeAtomically(lines.joined(separator: "\n") + "\n", to: root + "/b/metrics.jsonl")
        let edited = try RunComparison(root + "/a", root + "/b")
        XCTAssertEqual(edited.metricsDifference, "line 4 (train, step 4): epoch is 1 against 9")
        XCTAssertNil(edited.checkpointDifference)
    }

    /// Accumulation inside a micro-shard changes only the order of float sums
    /// within it; the default mode and the reproducible one differ (other noise).
    func testReproducibleRunLearns() throws {
        let root = try temporaryDirectory()
        let r = try trainer(root + "/r")
        let summary = try r.run()
        let d = try trainer(root + "/d", reproducible: false)
        let defaultSummary = try d.run()
        XCTAssertEqual(summary.steps, 8)
        XCTAssertEqual(summary.samplesSeen, 202)
        let (loss, other) = (try XCTUnwrap(summary.finalEvaluation).loss, try XCTUnwrap(defaultSummary.finalEvaluation).loss)
        XCTAssertNotEqual(loss, other)
        XCTAssertEqual(loss, other, accuracy: 0.05 * other)
    }
}
