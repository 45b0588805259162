import _Differentiation
import XCTest
import TestSupport
@testable import TensorCore
import CKernels

/// The linear layer on mostly-zero input (interactions, counts), which runs
/// sparse kernels (`SparseRowsOperand`, `ck_sparse_linear`): against a
/// float64 reference, finite differences, the dense bf16 semantics, and the
/// portable C path bit for bit.
final class SparseLinearTests: XCTestCase {
    /// (b, d) with about `density` of its values nonzero, the rest +0.
    func sparseTensor(_ b: Int, _ d: Int, density: Float, seed: UInt32) -> Tensor {
        let values = randomTensor([b, d], low: 0, high: 1, seed: seed).scalars
        let keep = randomTensor([b, d], low: 0, high: 1, seed: seed + 1000).scalars
        return Tensor(shape: [b, d], scalars: zip(values, keep).map { $1 < density ? $0 : 0 })
    }

    /// x · wᵀ + b in float64, then ReLU when asked.
    func reference(_ x: Tensor, _ w: Tensor, _ bias: Tensor, relu: Bool = false) -> [Double] {
        let (b, d, h) = (x.shape[0], x.shape[1], w.shape[0])
        var y = [Double](repeating: 0, count: b * h)
        for r in 0..<b {
            for o in 0..<h {
                var s = Double(bias.scalars[o])
                for j in 0..<d { s += Double(x.scalars[r * d + j]) * Double(w.scalars[o * d + j]) }
                y[r * h + o] = relu ? max(s, 0) : s
            }
        }
        return y
    }

    func testSparseInputTakesTheSparseKernelsAndDenseInputDoesNot() {
        let x = sparseTensor(200, 60, density: 0.05, seed: 1)
        XCTAssertNotNil(SparseRowsOperand(x, outputs: 20, on: cpu), "5 % nonzeros at B = 200: sparse")
        let operand = SparseRowsOperand(x, outputs: 20, on: cpu)!
        XCTAssertEqual(operand.nonzeroCount, x.scalars.filter { $0 != 0 }.count)
        XCTAssertNil(SparseRowsOperand(randomTensor([200, 60], seed: 2), outputs: 20, on: cpu), "dense data stays dense")
        XCTAssertNil(SparseRowsOperand(sparseTensor(3, 60, density: 0.05, seed: 3), outputs: 20, on: cpu),
                     "3 rows: one pass over the weight costs more than the dense product")
        // At most 10 % nonzero; below that, the limit grows with the batch, and bf16's faster dense GEMM lowers it.
        XCTAssertEqual(SparseRowsOperand.nonzeroLimit(rows: 500, columns: 3000, outputs: 600, bf16: false), 150_000)
        let bf16 = SparseRowsOperand.nonzeroLimit(rows: 500, columns: 3000, outputs: 600, bf16: true)
        XCTAssertGreaterThan(bf16, 500 * 3000 / 20, "Mult-VAE's 2 % nonzeros run sparse in either precision")
        let small = (fp32: SparseRowsOperand.nonzeroLimit(rows: 100, columns: 3000, outputs: 600, bf16: false),
                     bf16: SparseRowsOperand.nonzeroLimit(rows: 100, columns: 3000, outputs: 600, bf16: true))
        XCTAssertGreaterThan(small.fp32, small.bf16)
        XCTAssertLessThan(small.bf16, 100 * 3000 / 10)
        XCTAssertLessThan(SparseRowsOperand.nonzeroLimit(rows: 128, columns: 784, outputs: 400, bf16: true), 128 * 784 / 10,
                          "images (Fashion-MNIST: half the pixels nonzero; MNIST: a fifth) stay dense")
        XCTAssertEqual(SparseRowsOperand.nonzeroLimit(rows: 64, columns: 784, outputs: 400, bf16: true), 0)
    }

    func testForwardMatchesAFloat64Reference() {
        let x = sparseTensor(200, 60, density: 0.05, seed: 4), w = randomTensor([45, 60], seed: 5)
        let b = randomTensor([45], seed: 6)
        XCTAssertNotNil(SparseRowsOperand(x, outputs: 45, on: cpu))
        for relu in [false, true] {
            let y = relu ? linearReLU(x, weight: w, bias: b, on: cpu) : linear(x, weight: w, bias: b, on: cpu)
            let expected = reference(x, w, b, relu: relu)
            for i in 0..<y.count { XCTAssertEqual(Double(y.scalars[i]), expected[i], accuracy: 1e-5, "y[\(i)] relu \(relu)") }
        }
    }

    func testGradientsMatchFiniteDifferences() {
        let x = sparseTensor(200, 60, density: 0.05, seed: 7), w = randomTensor([20, 60], seed: 8)
        let b = randomTensor([20], seed: 9), r = randomTensor([200, 20], seed: 10)
        XCTAssertNotNil(SparseRowsOperand(x, outputs: 20, on: cpu))
        // With respect to the parameters alone (the first layer on data) …
        let (dw, db) = gradient(at: w, b) { w, b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }
        assertMatchesFiniteDifferences(dw, of: { w in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: w, "sparse ∂w")
        assertMatchesFiniteDifferences(db, of: { b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: b, "sparse ∂b")
        // … and with respect to the input too (dense dy · w; linear in x, so exact differences) …
        let (dx, _, _) = gradient(at: x, w, b) { x, w, b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }
        assertMatchesFiniteDifferences(dx, of: { x in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: x, "sparse ∂x")
        // … and with the ReLU fused: ∂w[o, j] = Σ_r r[r, o]·[pre[r, o] > 0]·x[r, j], in float64 (finite
        // differences of a 4,000-term fp32 sum across the ReLU's kinks are too noisy to say more).
        let (_, dw2, _) = gradient(at: x, w, b) { x, w, b in sum(linearReLU(x, weight: w, bias: b, on: cpu) * r) }
        let pre = reference(x, w, b)
        var active = 0
        for o in 0..<20 {
            for j in 0..<60 {
                var s = 0.0
                for row in 0..<200 where pre[row * 20 + o] > 0 {
                    s += Double(r.scalars[row * 20 + o]) * Double(x.scalars[row * 60 + j])
                    active += 1
                }
                XCTAssertEqual(Double(dw2.scalars[o * 60 + j]), s, accuracy: 1e-5, "sparse relu ∂w[\(o), \(j)]")
            }
        }
        XCTAssertTrue(active > 0 && active < 200 * 20 * 60, "the ReLU is active on some rows only")
    }

    func testWeightGradientIntoTheSinkAccumulates() {
        // dw written, then added: the sparse kernel's accumulate flag, as the GEMM's.
        let x = sparseTensor(200, 60, density: 0.05, seed: 11), dy = randomTensor([200, 20], seed: 12)
        let operand = SparseRowsOperand(x, outputs: 20, on: cpu)!
        var dw = [Float](repeating: 7, count: 20 * 60)
        dw.withUnsafeMutableBufferPointer { operand.weightGradient(dy, outputs: 20, into: $0.baseAddress!, accumulate: false, on: cpu) }
        var expected = [Double](repeating: 0, count: 20 * 60)
        for o in 0..<20 { for j in 0..<60 { for r in 0..<200 {
            expected[o * 60 + j] += Double(dy.scalars[r * 20 + o]) * Double(x.scalars[r * 60 + j])
        } } }
        for i in 0..<dw.count { XCTAssertEqual(Double(dw[i]), expected[i], accuracy: 1e-5, "dw[\(i)]") }
        let once = dw
        dw.withUnsafeMutableBufferPointer { operand.weightGradient(dy, outputs: 20, into: $0.baseAddress!, accumulate: true, on: cpu) }
        for i in 0..<dw.count { XCTAssertEqual(dw[i], once[i] + once[i], "accumulated dw[\(i)]") }
    }

    func testBF16RoundsBothFactorsOfEveryProduct() throws {
        guard CPU.hasNativeBF16 else { throw XCTSkip("this CPU has no native bf16") }
        let bf = try Backend(precision: .bf16)
        let x = sparseTensor(400, 60, density: 0.03, seed: 13), w = randomTensor([20, 60], seed: 14)
        let b = randomTensor([20], seed: 15)
        XCTAssertNotNil(SparseRowsOperand(x, outputs: 20, on: bf))
        func rounded(_ t: Tensor) -> Tensor {
            var s = t.scalars
            ck_bf16_round_in_place(&s, s.count)
            return Tensor(shape: t.shape, scalars: s)
        }
        // The products of bf16 values are exact in fp32: only the fp32 sums differ from float64.
        let y = linear(x, weight: w, bias: b, on: bf)
        let expected = reference(rounded(x), rounded(w), b)
        var differs = false
        for i in 0..<y.count {
            XCTAssertEqual(Double(y.scalars[i]), expected[i], accuracy: 1e-5, "bf16 y[\(i)]")
            if abs(Double(linear(x, weight: w, bias: b, on: cpu).scalars[i]) - expected[i]) > 1e-4 { differs = true }
        }
        XCTAssertTrue(differs, "the bf16 rounding is visible against fp32")
    }

    func testAVX512AndPortablePathsGiveTheSameBits() {
        // Odd sizes: a partial block of outputs (45 = 32 + 13) and of columns (101 = 6·16 + 5).
        for (b, d, h, bf16) in [(37, 101, 45, 0), (37, 101, 45, 1), (64, 300, 32, 0), (5, 17, 1, 1)] {
            let x = sparseTensor(b, d, density: 0.1, seed: 20), w = randomTensor([h, d], seed: 21)
            let bias = randomTensor([h], seed: 22), dy = randomTensor([b, h], seed: 23)
            var starts = [Int64](repeating: 0, count: b + 1)
            var columns = [Int32](repeating: 0, count: b * d + 16), values = [Float](repeating: 0, count: b * d + 16)
            let n = Int(ck_dense_to_csr(x.scalars, b, d, b * d, &starts, &columns, &values))
            XCTAssertEqual(n, x.scalars.filter { $0 != 0 }.count)
            var tile = [Float](repeating: 0, count: ck_sparse_tile_floats(d))
            var y1 = [Float](repeating: 0, count: b * h), y2 = y1
            var dw1 = randomTensor([h, d], seed: 24).scalars, dw2 = dw1
            for relu: Int32 in [0, 1] {
                ck_sparse_linear(starts, columns, values, b, w.scalars, h, d, bias.scalars, relu, Int32(bf16), &tile, &y1)
                ck_sparse_linear_portable(starts, columns, values, b, w.scalars, h, d, bias.scalars, relu, Int32(bf16), &tile, &y2)
                XCTAssertEqual(y1.map(\.bitPattern), y2.map(\.bitPattern), "forward \(b)×\(d)·\(h) bf16 \(bf16) relu \(relu)")
            }
            for accumulate: Int32 in [1, 0] {
                ck_sparse_linear_weight_gradient(starts, columns, values, b, dy.scalars, h, d, Int32(bf16), accumulate, &tile, &dw1)
                ck_sparse_linear_weight_gradient_portable(starts, columns, values, b, dy.scalars, h, d, Int32(bf16), accumulate,
                                                          &tile, &dw2)
                XCTAssertEqual(dw1.map(\.bitPattern), dw2.map(\.bitPattern), "dw \(b)×\(d)·\(h) bf16 \(bf16) accumulate \(accumulate)")
            }
        }
    }

    func testDenseToCSRCountsEveryBitPatternButPlusZeroAndStopsAtTheLimit() {
        let x: [Float] = [0, -0.0, 1, .nan, 0, 2, 0, 0, 0, 0, 0, 3]  // 3 rows of 4
        var starts = [Int64](repeating: 0, count: 4)
        var columns = [Int32](repeating: 0, count: 12 + 16), values = [Float](repeating: 0, count: 12 + 16)
        XCTAssertEqual(ck_dense_to_csr(x, 3, 4, 100, &starts, &columns, &values), 5)
        XCTAssertEqual(starts, [0, 3, 4, 5])
        XCTAssertEqual(Array(columns[0..<5]), [1, 2, 3, 1, 3])
        XCTAssertEqual(values[0].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertTrue(values[2].isNaN)
        XCTAssertEqual(ck_dense_to_csr(x, 3, 4, 4, &starts, &columns, &values), -1, "past the limit")
        XCTAssertEqual(ck_dense_to_csr(x, 3, 4, 5, &starts, &columns, &values), 5, "at the limit")
        XCTAssertEqual(ck_count_nonzero(x, 12, 100), 5)
        XCTAssertEqual(ck_count_nonzero(x, 12, 5), 5)
        XCTAssertEqual(ck_count_nonzero(x, 12, 4), 5, "past the limit: limit + 1")
        let long = (0..<100).map { Float($0 % 3) }  // 66 nonzero, across whole vectors and a tail
        XCTAssertEqual(ck_count_nonzero(long, 100, 1000), 66)
        XCTAssertEqual(ck_count_nonzero(long, 100, 10), 11)
    }
}
