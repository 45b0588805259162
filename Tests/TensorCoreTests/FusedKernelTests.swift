import XCTest
@testable import TensorCore
import CKernels
import Foundation

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
                let starts: [UnsafeMutablePointer<Float>?] = copies
                starts.withUnsafeBufferPointer {
                    AdamKernel.apply(parameters: &p2, summing: $0, at: 0, m: &m2, v: &v2, count: count, publish: publish,
                                     constants)
                }
                let published: [Float] = Array(UnsafeBufferPointer(start: publish, count: count))
                XCTAssertEqual(p1.map(\.bitPattern), p2.map(\.bitPattern), "parameters, \(ranks) ranks, \(count)")
                XCTAssertEqual(m1.map(\.bitPattern), m2.map(\.bitPattern), "first moment, \(ranks) ranks, \(count)")
                XCTAssertEqual(v1.map(\.bitPattern), v2.map(\.bitPattern), "second moment, \(ranks) ranks, \(count)")
                XCTAssertEqual(p1.map(\.bitPattern), published.map(\.bitPattern), "published, \(ranks) ranks, \(count)")
            }
        }
    }
}

/// The count likelihoods' row kernels against the plain loops they replace.
final class CountRowKernelTests: XCTestCase {
    func testSoftmaxAndMultinomialRowGiveTheBitsOfThePlainLoops() {
        var generator = SystemRandomNumberGenerator()
        for width in [1, 15, 16, 17, 100, 3001] {
            for trial in 0..<4 {
                var logits = (0..<width).map { _ in Float.random(in: -30...30, using: &generator) }
                // Sparse counts with fractions, negatives and NaN (read as 0), and ±0 logits.
                let x: [Float] = (0..<width).map { j in
                    switch Int.random(in: 0..<40, using: &generator) {
                    case 0: return 1
                    case 1: return Float.random(in: 0.001...7, using: &generator)
                    case 2: return -2
                    case 3 where trial == 3: return .nan
                    default: return 0
                    }
                }
                if trial == 2 { logits[0] = -0.0; logits[width - 1] = 0.0 }
                // The loops as Counts.swift wrote them.
                var top = -Float.infinity
                for j in 0..<width { top = Swift.max(top, logits[j]) }
                let expected = logits.map { fastExp($0 - top) }
                var shares = [Float](repeating: 0, count: width)
                let kernelTop = softmaxExponentials(logits, width: width, into: &shares)
                XCTAssertEqual(kernelTop.bitPattern, top.bitPattern, "top, width \(width)")
                XCTAssertEqual(shares.map(\.bitPattern), expected.map(\.bitPattern), "exponentials, width \(width)")
                let total = Double(vectorSum(shares, count: width))
                let lse = Double(top) + Foundation.log(total)
                let inverse = Float(1 / total)
                for j in 0..<width { shares[j] *= inverse }
                var n = 0.0
                var terms = [Float](repeating: 0, count: width), gradient = terms
                for j in 0..<width {
                    let c = x[j] > 0 ? Double(x[j]) : 0
                    n += c
                    terms[j] = c == 0 ? 0 : Float(-c * (Double(logits[j]) - lse))
                }
                for j in 0..<width { gradient[j] = Float(n) * shares[j] - Float(x[j] > 0 ? Double(x[j]) : 0) }
                var kernelTerms = [Float](repeating: 1, count: width), kernelGradient = kernelTerms
                let kernelN = multinomialRow(logits: logits, counts: x, width: width, shares: shares, lse: lse,
                                             terms: &kernelTerms, gradient: &kernelGradient)
                XCTAssertEqual(kernelN.bitPattern, n.bitPattern, "count total, width \(width)")
                XCTAssertEqual(kernelTerms.map(\.bitPattern), terms.map(\.bitPattern), "terms, width \(width)")
                XCTAssertEqual(kernelGradient.map(\.bitPattern), gradient.map(\.bitPattern), "gradient, width \(width)")
                var termsOnly = [Float](repeating: 1, count: width)
                multinomialRow(logits: logits, counts: x, width: width, shares: shares, lse: lse, terms: &termsOnly,
                               gradient: nil)
                XCTAssertEqual(termsOnly.map(\.bitPattern), terms.map(\.bitPattern), "terms without gradient")
            }
        }
    }
}

/// The fused step's finiteness check of the summed gradient.
final class AdamSumFinitenessTests: XCTestCase {
    func testTheFusedPassReportsANonFiniteSumWhereverItIs() {
        let constants = AdamKernel.Constants(gradientScale: 1, oneMinusBeta1: 0.1, beta2: 0.999, oneMinusBeta2: 0.001,
                                             stepSize: 1e-3, inverseBiasCorrection2Sqrt: 31.6, epsilon: 1e-8)
        let count = 3001
        // (rank, index, value): a NaN or an infinity in one rank's segment, in the first, a middle and the last
        // block; opposite infinities on two ranks; finite values whose sum overflows.
        let cases: [([(Int, Int, Float)], Bool)] = [
            ([], false), ([(0, 0, .nan)], true), ([(1, 1500, .infinity)], true), ([(2, 3000, -.infinity)], true),
            ([(0, 2048, .infinity), (1, 2048, -.infinity)], true),
            ([(0, 7, .greatestFiniteMagnitude), (1, 7, .greatestFiniteMagnitude)], true),
            ([(0, 7, .greatestFiniteMagnitude), (1, 7, -.greatestFiniteMagnitude)], false),
        ]
        for (spoiled, expected) in cases {
            let segments: [UnsafeMutablePointer<Float>] = (0..<3).map { _ in
                let s = UnsafeMutablePointer<Float>.allocate(capacity: count)
                s.initialize(repeating: 0.5, count: count)
                return s
            }
            defer { segments.forEach { $0.deallocate() } }
            for (rank, index, value) in spoiled { segments[rank][index] = value }
            var p = [Float](repeating: 1, count: count), m = [Float](repeating: 0, count: count), v = m
            var published = [Float](repeating: 0, count: count)
            let starts: [UnsafeMutablePointer<Float>?] = segments
            let nonFinite = starts.withUnsafeBufferPointer {
                AdamKernel.apply(parameters: &p, summing: $0, at: 0, m: &m, v: &v, count: count, publish: &published, constants)
            }
            XCTAssertEqual(nonFinite, expected, "\(spoiled)")
        }
    }
}

/// The ReLU pullback behind a convolution in one pass (mask, bf16 rounding,
/// bias sums) against the three kernels it replaces.
final class ReLUBackwardSumsTests: XCTestCase {
    func testOnePassGivesTheBitsOfMaskRoundingAndColumnSums() {
        var generator = SystemRandomNumberGenerator()
        // 16, 32, 48, 64, 80, 128 columns take the AVX-512 path (lanes over columns); 1, 3, 8, 24 the portable one,
        // 4,100 the portable one a row at a time (wider than its block).
        for cols in [1, 3, 8, 16, 24, 32, 48, 64, 80, 128, 4100] {
            for rows in cols > 1000 ? [0, 1, 7] : [0, 1, 7, 300] {
                let n = rows * cols
                var dy = (0..<n).map { _ in Float.random(in: -3...3, using: &generator) }
                var y = (0..<n).map { _ in Float.random(in: -1...1, using: &generator) }
                // Specials: signed zeros in dy and y, NaN and infinities in y (masked as y > 0 says).
                let specials: [(Float, Float)] = [(-0.0, 1), (0.0, 1), (5, -0.0), (5, 0.0), (7, .nan), (7, .infinity),
                                                  (7, -.infinity), (1e-40, 2), (-1e-40, 2)]
                for (k, (d, v)) in specials.enumerated() where k < n { dy[k * 7 % n] = d; y[k * 7 % n] = v }
                // Subnormals throughout and last (the vector body and the scalar tail of
                // ck_f32_to_bf16 round them apart: a part must be rounded as the whole array is).
                for k in stride(from: 50, to: n, by: 97) { dy[k] = 1e-40; y[k] = 2 }
                if n > 9 { dy[n - 1] = 1e-40; y[n - 1] = 2 }
                var masked = [Float](repeating: 0, count: n), sums = [Float](repeating: 1, count: cols)
                var rounded = [UInt16](repeating: 0, count: n)
                ck_relu_backward(dy, y, &masked, n)
                ck_column_sums(masked, rows, cols, &sums)
                ck_f32_to_bf16(masked, &rounded, n)
                for (writeValues, writeRounded) in [(true, true), (true, false), (false, true), (false, false)] {
                    var out = [Float](repeating: .nan, count: n), out16 = [UInt16](repeating: 0xFFFF, count: n)
                    var fusedSums = [Float](repeating: .nan, count: cols)
                    out.withUnsafeMutableBufferPointer { o in
                        out16.withUnsafeMutableBufferPointer { o16 in
                            ck_relu_backward_sums(dy, y, writeValues ? o.baseAddress : nil, writeRounded ? o16.baseAddress : nil,
                                                  rows, cols, &fusedSums)
                        }
                    }
                    let label = "\(rows)×\(cols), values \(writeValues), bf16 \(writeRounded)"
                    XCTAssertEqual(fusedSums.map(\.bitPattern), sums.map(\.bitPattern), "sums, \(label)")
                    if writeValues { XCTAssertEqual(out.map(\.bitPattern), masked.map(\.bitPattern), "values, \(label)") }
                    else { XCTAssertTrue(out.allSatisfy(\.isNaN), "values untouched, \(label)") }
                    if writeRounded { XCTAssertEqual(out16, rounded, "bf16, \(label)") }
                    else { XCTAssertTrue(out16.allSatisfy { $0 == 0xFFFF }, "bf16 untouched, \(label)") }
                }
            }
        }
    }
}

/// Bias gradients: each column summed from 0 in row order, one column or many.
final class ColumnSumsTests: XCTestCase {
    func testColumnSumsAreTheRowOrderSumsFromZero() {
        var generator = SystemRandomNumberGenerator()
        for cols in [1, 2, 3, 16, 33] {
            for rows in [0, 1, 2, 17, 50_176 / cols] {
                // Magnitudes far apart, so that another order of the adds gives other bits.
                let x = (0..<rows * cols).map { i in
                    Float.random(in: -1...1, using: &generator) * (i % 3 == 0 ? 1e7 : 1)
                }
                var expected = [Float](repeating: 0, count: cols)
                for i in 0..<rows { for j in 0..<cols { expected[j] += x[i * cols + j] } }
                var sums = [Float](repeating: .nan, count: cols)
                ck_column_sums(x, rows, cols, &sums)
                XCTAssertEqual(sums.map(\.bitPattern), expected.map(\.bitPattern), "\(rows) × \(cols)")
            }
        }
    }
}
