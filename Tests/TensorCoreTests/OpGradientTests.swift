import _Differentiation
import XCTest
import TestSupport
@testable import TensorCore

/// Every differentiable op's VJP against central finite differences. Ops that
/// return tensors are reduced to a scalar by a fixed random projection r, so
/// the check covers every output element's contribution.
final class OpGradientTests: XCTestCase {
    let r34 = randomTensor([3, 4], seed: 100)

    func testConcatenatingLastDimension() {
        let a = randomTensor([3, 2], seed: 1), c = Tensor(oneHot: [1, 0, 1], classes: 2)
        let joined = concatenatingLastDimension(a, c)
        XCTAssertEqual(joined.shape, [3, 4])
        XCTAssertEqual(Array(joined.scalars[0..<4]), [a.scalars[0], a.scalars[1], 0, 1])
        let r = r34
        assertGradientMatchesFiniteDifferences(of: { a in sum(concatenatingLastDimension(a, c) * r) }, at: a, "concat ∂a")
        // Leading dimensions: a channels-last image (B, H, W, C) with K constant channels.
        let image = randomTensor([2, 3, 2, 2], seed: 4)
        let channels = Tensor(oneHot: [0, 2], classes: 3).repeatingRows(6).reshaped([2, 3, 2, 3])
        let r5 = randomTensor([2, 3, 2, 5], seed: 5)
        assertGradientMatchesFiniteDifferences(of: { x in sum(concatenatingLastDimension(x, channels) * r5) }, at: image,
                                               "concat channels ∂x")
        XCTAssertEqual(concatenatingLastDimension(a, Tensor(zeros: [3, 0])), a, "no condition: the input itself")
    }

    /// A dense layer's weight with its features between (C, P) and (P, C)
    /// order: the values against the index formula, the pullbacks (the
    /// inverse permutations) against finite differences, and the layer on a
    /// channels-last image against the layer on the channels-first one.
    func testChannelsLastColumnsAndRows() {
        let (c, p) = (3, 4)
        let w = randomTensor([5, c * p], seed: 1), rows = randomTensor([c * p, 2], seed: 2), bias = randomTensor([c * p], seed: 3)
        let wl = channelsLastColumns(w, channels: c, on: cpu), rl = channelsLastRows(rows, channels: c, on: cpu)
        let bl = channelsLastRows(bias, channels: c, on: cpu)
        for h in 0..<5 {
            for pixel in 0..<p {
                for ch in 0..<c {
                    XCTAssertEqual(wl.scalars[h * c * p + pixel * c + ch], w.scalars[h * c * p + ch * p + pixel])
                }
            }
        }
        for pixel in 0..<p {
            for ch in 0..<c {
                XCTAssertEqual(Array(rl.scalars[(pixel * c + ch) * 2 ..< (pixel * c + ch) * 2 + 2]),
                               Array(rows.scalars[(ch * p + pixel) * 2 ..< (ch * p + pixel) * 2 + 2]))
                XCTAssertEqual(bl.scalars[pixel * c + ch], bias.scalars[ch * p + pixel])
            }
        }
        // oneDNN's reorder (above) and the C transpose (OpenBLAS backends) agree.
        let blas = try! Backend(library: .openblas)
        XCTAssertEqual(channelsLastColumns(w, channels: c, on: blas), wl)
        XCTAssertEqual(permutedFeatures(wl, channels: c, columns: true, toChannelsLast: false, on: blas), w)
        XCTAssertEqual(permutedFeatures(wl, channels: c, columns: true, toChannelsLast: false, on: cpu), w)
        XCTAssertEqual(permutedFeatures(rl, channels: c, columns: false, toChannelsLast: false, on: cpu), rows)
        XCTAssertEqual(channelsLastColumns(w, channels: 1, on: cpu), w, "one channel: the same order")
        XCTAssertEqual(channelsLastRows(bias, channels: c * p, on: cpu), bias, "one pixel: the same order")
        let r = randomTensor([5, c * p], seed: 4), r2 = randomTensor([c * p, 2], seed: 5), r1 = randomTensor([c * p], seed: 6)
        assertGradientMatchesFiniteDifferences(of: { w in sum(channelsLastColumns(w, channels: c, on: cpu) * r) }, at: w,
                                               "channelsLastColumns ∂w")
        assertGradientMatchesFiniteDifferences(of: { w in sum(channelsLastRows(w, channels: c, on: cpu) * r2) }, at: rows,
                                               "channelsLastRows ∂w")
        assertGradientMatchesFiniteDifferences(of: { b in sum(channelsLastRows(b, channels: c, on: cpu) * r1) }, at: bias,
                                               "channelsLastRows ∂bias")
        // The layer on the channels-last flattening with permuted columns is
        // the layer on the channels-first flattening (up to the order of the sum).
        let image = randomTensor([2, 2, 2, c], seed: 7)   // (B, H, W, C), P = 4
        let first = channelsFirst(image, on: cpu).reshaped([2, c * p])
        let expected = linear(first, weight: w, bias: randomTensor([5], seed: 8), on: cpu)
        let actual = linear(image.reshaped([2, p * c]), weight: wl, bias: randomTensor([5], seed: 8), on: cpu)
        for (a, e) in zip(actual.scalars, expected.scalars) { XCTAssertEqual(a, e, accuracy: 1e-5) }
        // And a layer whose outputs are an image: its channels-last outputs are the permuted channels-first ones.
        let z = randomTensor([2, 2], seed: 9)
        let out = linearReLU(z, weight: rl, bias: bl, on: cpu).reshaped([2, 2, 2, c])
        let reference = channelsLast(linearReLU(z, weight: rows, bias: bias, on: cpu).reshaped([2, c, 2, 2]), on: cpu)
        XCTAssertEqual(out, reference, "the same sums, in another order of the outputs: the same bits")
    }

    func testMatmul() {
        let a = randomTensor([3, 5], seed: 1), b = randomTensor([5, 4], seed: 2)
        let r = r34
        assertGradientMatchesFiniteDifferences(of: { a in sum(matmul(a, b, on: cpu) * r) }, at: a, "matmul ∂a")
        assertGradientMatchesFiniteDifferences(of: { b in sum(matmul(a, b, on: cpu) * r) }, at: b, "matmul ∂b")
    }

    func testLinearAllArguments() {
        let x = randomTensor([3, 5], seed: 1), w = randomTensor([4, 5], seed: 2), b = randomTensor([4], seed: 3)
        let r = r34
        // Differentiating with respect to x selects the full (x, weight, bias)
        // VJP; each of its three results is checked against finite
        // differences (computed without autodiff).
        let (_, full) = valueWithPullback(at: x, w, b) { x, w, b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }
        let (dx, dw, db) = full(1)
        assertMatchesFiniteDifferences(dx, of: { x in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: x, "linear ∂x")
        assertMatchesFiniteDifferences(dw, of: { w in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: w, "linear ∂w")
        assertMatchesFiniteDifferences(db, of: { b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: b, "linear ∂b")
        assertGradientMatchesFiniteDifferences(of: { x in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: x,
                                               "linear ∂x alone")
    }

    func testLinearParameterOnlyDerivative() {
        // x is a constant here, so autodiff uses the (weight, bias) VJP.
        let x = randomTensor([3, 5], seed: 1), w = randomTensor([4, 5], seed: 2), b = randomTensor([4], seed: 3)
        let r = r34
        let (dw, db) = gradient(at: w, b) { w, b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }
        assertMatchesFiniteDifferences(dw, of: { w in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: w, "linear(w,b) ∂w")
        assertMatchesFiniteDifferences(db, of: { b in sum(linear(x, weight: w, bias: b, on: cpu) * r) }, at: b, "linear(w,b) ∂b")
        // ∂b is the column sum of r.
        for j in 0..<4 {
            XCTAssertEqual(db.scalars[j], (0..<3).map { r.scalars[$0 * 4 + j] }.reduce(0, +), accuracy: 1e-6)
        }
    }

    func testLinearReLU() {
        let x = randomTensor([3, 5], seed: 4), w = randomTensor([4, 5], seed: 5), b = randomTensor([4], seed: 6)
        let r = r34
        // Kinks of ReLU make finite differences invalid within h of zero; these
        // inputs keep every pre-activation at least 0.05 away (checked below).
        let pre = linear(x, weight: w, bias: b, on: cpu)
        XCTAssertGreaterThan(pre.scalars.map { abs($0) }.min()!, 0.03)
        assertGradientMatchesFiniteDifferences(of: { x in sum(linearReLU(x, weight: w, bias: b, on: cpu) * r) }, at: x, h: 1e-3, "linearReLU ∂x")
        assertGradientMatchesFiniteDifferences(of: { w in sum(linearReLU(x, weight: w, bias: b, on: cpu) * r) }, at: w, h: 1e-3, "linearReLU ∂w")
        assertGradientMatchesFiniteDifferences(of: { b in sum(linearReLU(x, weight: w, bias: b, on: cpu) * r) }, at: b, h: 1e-3, "linearReLU ∂b")
        XCTAssertEqual(linearReLU(x, weight: w, bias: b, on: cpu), relu(pre))
    }

    func testReLU() {
        // Values away from the kink.
        let x = randomTensor([3, 4], seed: 7).map { $0 >= 0 ? $0 + 0.1 : $0 - 0.1 }
        let r = r34
        assertGradientMatchesFiniteDifferences(of: { x in sum(relu(x) * r) }, at: x, "relu")
    }

    func testExpSigmoidProductScaleSum() {
        let x = randomTensor([3, 4], low: -3, high: 3, seed: 8), y = randomTensor([3, 4], seed: 9)
        let r = r34
        assertGradientMatchesFiniteDifferences(of: { x in sum(exp(x) * r) }, at: x, h: 1e-3, "exp")
        assertGradientMatchesFiniteDifferences(of: { x in sum(sigmoid(x) * r) }, at: x, "sigmoid")
        assertGradientMatchesFiniteDifferences(of: { x in sum(x * y) }, at: x, "product ∂lhs")
        assertGradientMatchesFiniteDifferences(of: { y in sum(x * y) }, at: y, "product ∂rhs")
        assertGradientMatchesFiniteDifferences(of: { x in sum(x * 2.5 * r) }, at: x, "scale")
        assertGradientMatchesFiniteDifferences(of: { x in sum(x) }, at: x, "sum")
        assertGradientMatchesFiniteDifferences(of: { x in sum((x + y) * r) }, at: x, "add")
        assertGradientMatchesFiniteDifferences(of: { x in sum((y - x) * r) }, at: x, "subtract")
        assertGradientMatchesFiniteDifferences(of: { x in sum(x.reshaped([4, 3]) * r.reshaped([4, 3])) }, at: x, "reshape")
    }

    func testReparameterize() {
        let mu = randomTensor([3, 4], seed: 10), lv = randomTensor([3, 4], low: -2, high: 1, seed: 11)
        let eps = Tensor(normalsFrom: RandomStream(seed: 5, domain: .trainingNoise), shape: [3, 4])
        let r = r34
        assertGradientMatchesFiniteDifferences(of: { m in sum(reparameterize(mean: m, logVariance: lv, noise: eps) * r) }, at: mu, "reparameterize ∂μ")
        assertGradientMatchesFiniteDifferences(of: { l in sum(reparameterize(mean: mu, logVariance: l, noise: eps) * r) }, at: lv, "reparameterize ∂logσ²")
        let z = reparameterize(mean: mu, logVariance: lv, noise: eps)
        for i in 0..<z.count {
            XCTAssertEqual(z.scalars[i], mu.scalars[i] + eps.scalars[i] * Foundation.exp(lv.scalars[i] / 2), accuracy: 1e-5)
        }
    }

    func testGaussianKLPerDimension() {
        let mu = randomTensor([3, 4], low: -2, high: 2, seed: 12), lv = randomTensor([3, 4], low: -3, high: 2, seed: 13)
        let r = randomTensor([4], seed: 16)
        assertGradientMatchesFiniteDifferences(of: { m in sum(gaussianKLPerDimension(mean: m, logVariance: lv) * r) }, at: mu, "KL ∂μ")
        assertGradientMatchesFiniteDifferences(of: { l in sum(gaussianKLPerDimension(mean: mu, logVariance: l) * r) }, at: lv, "KL ∂logσ²")
        let perDimension = gaussianKLPerDimension(mean: mu, logVariance: lv)
        for j in 0..<4 {
            var expected: Double = 0
            for i in 0..<3 {
                let m = Double(mu.scalars[i * 4 + j]), l = Double(lv.scalars[i * 4 + j])
                expected += -0.5 * (1 + l - m * m - Foundation.exp(l))
            }
            XCTAssertEqual(Double(perDimension.scalars[j]), expected, accuracy: 1e-5 * abs(expected), "dimension \(j)")
        }
    }

    func testSymbolicZeroIsAcceptedEverywhere() {
        let t = randomTensor([2, 3])
        XCTAssertEqual(Tensor.zero + t, t)
        XCTAssertEqual(t + .zero, t)
        XCTAssertEqual(t - .zero, t)
        XCTAssertEqual(Tensor.zero - t, t.scaled(by: -1))
        var u = Tensor.zero
        u += t
        XCTAssertEqual(u, t)
        XCTAssertTrue(Tensor.zero.isSymbolicZero)
        XCTAssertFalse(Tensor(0).isSymbolicZero)
        XCTAssertFalse(Tensor(zeros: [0, 3]).isSymbolicZero)
        // Pullbacks given a symbolic zero return symbolic zeros.
        let (_, pb) = valueWithPullback(at: t) { relu($0) }
        XCTAssertTrue(pb(.zero).isSymbolicZero)
        XCTAssertEqual(Tensor.zero.materialized(shape: [2, 2]), Tensor(zeros: [2, 2]))
    }

    func testEmptyBatchThroughLinear() {
        let x = Tensor(zeros: [0, 5]), w = randomTensor([4, 5]), b = randomTensor([4])
        let y = linear(x, weight: w, bias: b, on: cpu)
        XCTAssertEqual(y.shape, [0, 4])
        let (dw, db) = gradient(at: w, b) { w, b in sum(linear(x, weight: w, bias: b, on: cpu)) }
        XCTAssertEqual(dw, Tensor(zeros: [4, 5]))
        XCTAssertEqual(db, Tensor(zeros: [4]))
    }
}

/// The missing-value fill against finite differences.
final class MissingValueOpTests: XCTestCase {
    func testFillingMissing() {
        let x = randomTensor([3, 4], seed: 11)
        let mask = Tensor(shape: [3, 4], scalars: [1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1])
        let data = x.zipMap(mask, *)
        let fill = randomTensor([4], seed: 12)
        let filled = fillingMissing(data, mask: mask, fill: fill)
        XCTAssertEqual(filled.scalars[0], data.scalars[0], "observed values pass")
        XCTAssertEqual(filled.scalars[1], fill.scalars[1], "missing values take the fill")
        let r = randomTensor([3, 4], seed: 13)
        assertGradientMatchesFiniteDifferences(of: { f in sum(fillingMissing(data, mask: mask, fill: f) * r) }, at: fill,
                                               "fillingMissing ∂fill")
    }
}
