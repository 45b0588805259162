import XCTest
import Datasets
import TensorCore
import VAEModel
@testable import Training

/// `--input-dropout`: value j of a batch row is kept (and scaled by 1/(1 − p))
/// when uniform j of the row's stream, keyed by (seed, rank, sample, step),
/// is below 1 − p. Mostly-zero rows draw only their nonzeros' uniforms by
/// random access: the result must be the one of the whole stream.
final class InputDropoutTests: XCTestCase {
    func testSparseRowsDrawTheSameNumbersAsTheWholeStream() {
        let d = 64
        // Row 0 dense (all of the stream drawn), rows 1–3 mostly zero (random access), row 2 with a −0 and a NaN.
        var values = [Float](repeating: 0, count: 4 * d)
        for j in 0..<d { values[j] = Float(j + 1) }
        for (row, columns) in [(1, [3, 17, 40]), (2, [0, 5, 63]), (3, [] as [Int])] {
            for j in columns { values[row * d + j] = Float(row * 100 + j) }
        }
        values[2 * d + 9] = -0.0
        values[2 * d + 10] = .nan
        let set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: d), values: SampleValues(floats: values),
                           scanningForNaN: false)
        let plan = ShardPlan(sampleCount: 4, worldSize: 1, globalBatch: 4, seed: 5)
        let data = TrainingData(ShardedData(plan: plan, shard: set, test: set, shape: set.shape, classNames: nil,
                                            testIsHeldOut: false, trainSource: "test"),
                                seed: 5, rank: 0, classes: 0)
        let p = 0.5, step = 7
        let input = data.batch([0, 1, 2, 3], likelihood: .bernoulli, inputDropout: p, step: step).input.scalars
        var kept = 0, dropped = 0
        for i in 0..<4 {
            let u = RandomStream(seed: 5, domain: .inputDropout, UInt32(i), UInt32(step)).uniforms(count: d)
            for j in 0..<d {
                let x = values[i * d + j]
                let expected: Float = u[j] < Float(1 - p) ? x * Float(1 / (1 - p)) : 0
                XCTAssertEqual(input[i * d + j].bitPattern, expected.bitPattern, "row \(i) value \(j): \(input[i * d + j]) vs \(expected)")
                if x != 0 { if expected != 0 { kept += 1 } else { dropped += 1 } }
            }
        }
        XCTAssertGreaterThan(kept, 5)
        XCTAssertGreaterThan(dropped, 5)
    }
}
