import XCTest
import TensorCore

/// The shared-memory step's fused kernel against the three calls it replaces.
final class AdamKernelTests: XCTestCase {
    func testSumUpdateAndPublishInOnePassGivesTheBitsOfTheThreeSteps() {
        var generator = SystemRandomNumberGenerator()
        let constants = AdamKernel.Constants(gradientScale: 1 / 137, oneMinusBeta1: 0.1, beta2: 0.999,
                                             oneMinusBeta2: 0.001, stepSize: 1e-3, inverseBiasCorrection2Sqrt: 31.6,
                                             epsilon: 1e-8)
        for ranks in 1...5 {
            for count in [0, 1, 15, 17, 1023, 1024, 1025, 3001] {
                func randoms(_ scale: Float) -> [Float] { (0..<count).map { _ in Float.random(in: -scale...scale, using: &generator) } }
                let segments = (0..<ranks).map { _ in randoms(50) }
                let parameters = randoms(1), m = randoms(0.1), v = randoms(0.1).map { $0 * $0 }
                // The three steps: the rank-order sum, Adam on it, a copy of the result.
                var sum = [Float](repeating: 0, count: count)
                var p1 = parameters, m1 = m, v1 = v
                let copies: [UnsafeMutablePointer<Float>] = segments.map { _ in .allocate(capacity: max(count, 1)) }
                defer { copies.forEach { $0.deallocate() } }
                for (r, s) in segments.enumerated() { copies[r].initialize(from: s, count: count) }
                sum.withUnsafeMutableBufferPointer { SegmentSum.sum(copies, offset: 0, count: count, into: $0.baseAddress!) }
                if count > 0 {
                    AdamKernel.apply(parameters: &p1, gradient: sum, m: &m1, v: &v1, count: count, constants)
                }
                // The fused pass, publishing in place of the last rank's gradient (as ranks do).
                var p2 = parameters, m2 = m, v2 = v
                let publish = copies[ranks - 1]
                AdamKernel.apply(parameters: &p2, summing: copies, m: &m2, v: &v2, count: count, publish: publish,
                                 constants)
                let published: [Float] = Array(UnsafeBufferPointer(start: publish, count: count))
                XCTAssertEqual(p1.map(\.bitPattern), p2.map(\.bitPattern), "parameters, \(ranks) ranks, \(count)")
                XCTAssertEqual(m1.map(\.bitPattern), m2.map(\.bitPattern), "first moment, \(ranks) ranks, \(count)")
                XCTAssertEqual(v1.map(\.bitPattern), v2.map(\.bitPattern), "second moment, \(ranks) ranks, \(count)")
                XCTAssertEqual(p1.map(\.bitPattern), published.map(\.bitPattern), "published, \(ranks) ranks, \(count)")
            }
        }
    }
}
