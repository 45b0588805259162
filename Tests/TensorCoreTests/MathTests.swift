import XCTest
@testable import TensorCore

final class MathTests: XCTestCase {
    func testFastExpMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let exact = Foundation.exp(Double(x))
            let rel = Float(abs(Double(fastExp(x)) - exact) / exact)
            worst = max(worst, rel)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7, "fastExp worst relative error")
        XCTAssertTrue(fastExp(.nan).isNaN)
        XCTAssertEqual(fastExp(0), 1)
    }

    func testFastLogAndLog1pMatchLibm() {
        var worst: Float = 0
        for i in 1...20_000 {
            let x = Float(i) * 0.0013
            let exact = Foundation.log(Double(x))
            let err = Float(abs(Double(fastLog(x)) - exact)) / max(1, Float(abs(exact)))
            worst = max(worst, err)
        }
        XCTAssertLessThan(worst, 3e-7, "fastLog worst error")
        var worst1p: Float = 0
        for e in stride(from: -30.0, through: 0.0, by: 0.01) {
            let t = Float(Foundation.exp(e))
            let exact = Foundation.log1p(Double(t))
            worst1p = max(worst1p, Float(abs(Double(fastLog1p(t)) - exact) / exact))
        }
        XCTAssertLessThan(worst1p, 3e-7, "fastLog1p worst relative error")
    }

    func testVectorSum() {
        for n in [0, 1, 15, 16, 31, 32, 33, 100, 1000] {
            let values = (0..<n).map { Float($0 % 7) - 2.5 }
            XCTAssertEqual(values.vectorSum(), values.reduce(0, +), accuracy: 1e-3, "n = \(n)")
        }
    }

    func testFlushingSubnormals() {
        let tiny: [Float] = [Float.leastNormalMagnitude, 0.25]
        BLAS.flushSubnormalsToZero(false)
        XCTAssertTrue((tiny[0] * tiny[1]).isSubnormal)
        BLAS.flushSubnormalsToZero(true)
        XCTAssertEqual(tiny[0] * tiny[1], 0, "subnormal results flush to zero")
        BLAS.flushSubnormalsToZero(false)
    }

    /// The vectorised Bernoulli sweep gives the bits of the scalar formula
    /// (fastExp, fastLog1p, Swift's max) for every lane and for the scalar
    /// tail: logits across the whole range, the clamps, ±0, subnormals,
    /// infinities and NaN (which must stay NaN, so that a non-finite loss is
    /// still caught), targets 0, 1 and between.
    func testBernoulliKernelMatchesTheScalarFormula() {
        var logits: [Float] = [0, -0, 1e-45, -1e-45, 1e-30, -1e-30, 0.5, -0.5, 17, -17, 87.3, -87.4, 88.5, -88.5, 100, -100,
                               .infinity, -.infinity, .nan, Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude]
        var l: Float = -120
        while l < 120 { logits.append(l); l += 0.0731 }
        let count = logits.count * 3 + 5   // not a multiple of 16: the tail runs the scalar path
        let lv = (0..<count).map { logits[$0 % logits.count] }
        let xv = (0..<count).map { [Float(0), 1, 0.3][$0 % 3] }
        var terms = [Float](repeating: 0, count: count), gradient = terms, termsOnly = terms
        lv.withUnsafeBufferPointer { lp in
            xv.withUnsafeBufferPointer { xp in
                bernoulliNegativeLogLikelihood(logits: lp.baseAddress!, targets: xp.baseAddress!, count: count,
                                               terms: &terms, gradient: &gradient)
                bernoulliNegativeLogLikelihood(logits: lp.baseAddress!, targets: xp.baseAddress!, count: count,
                                               terms: &termsOnly, gradient: nil)
            }
        }
        var nanLanes = 0
        for i in 0..<count {
            let (l, x) = (lv[i], xv[i])
            let t = fastExp(-Swift.abs(l))
            let term = Swift.max(l, 0) - l * x + fastLog1p(t)
            let g = (l >= 0 ? 1 / (1 + t) : t / (1 + t)) - x
            if term.isNaN { nanLanes += 1 }
            XCTAssertEqual(terms[i].bitPattern == term.bitPattern || (terms[i].isNaN && term.isNaN), true,
                           "term at l = \(l), x = \(x): \(terms[i]) vs \(term)")
            XCTAssertEqual(termsOnly[i].bitPattern == terms[i].bitPattern || (termsOnly[i].isNaN && terms[i].isNaN), true)
            XCTAssertEqual(gradient[i].bitPattern == g.bitPattern || (gradient[i].isNaN && g.isNaN), true,
                           "gradient at l = \(l), x = \(x): \(gradient[i]) vs \(g)")
        }
        XCTAssertGreaterThan(nanLanes, 0, "NaN logits give NaN terms")
    }
}
