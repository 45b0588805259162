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
}
