import _Differentiation
import XCTest
import TestSupport
@testable import TensorCore

/// The bf16 path against the fp32 one. Tolerances from bf16's 8-bit
/// significand: each input is rounded once, with relative error at most
/// u = 2⁻⁹, so each product a·b carries at most (1 + u)² − 1 ≈ 2u; summed over
/// K terms with fp32 accumulation, |C_bf16 − C_fp32| ≤ 2.01·u·Σ|a||b|. The
/// dot-product instruction (VDPBF16PS) adds pairs of products with its own
/// rounding, which on this machine measured up to 11 % beyond that bound, so
/// the tests allow 4u·Σ|a||b| (+ a small absolute floor for the fp32
/// rounding of both sums). Σ|a||b| is computed by the fp32 op on |inputs|.
final class BF16Tests: XCTestCase {
    let u = Precision.bf16.unitRoundoff

    func backend() throws -> Backend {
        guard CPU.hasNativeBF16 else { throw XCTSkip("this CPU has no native bf16") }
        return try Backend(precision: .bf16)
    }

    func assertWithinBF16Bound(_ bf16: Tensor, _ fp32: Tensor, bound: Tensor, _ label: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(bf16.shape, fp32.shape, label, file: file, line: line)
        var worst: Float = 0
        for i in 0..<min(bf16.count, fp32.count) {
            let error = abs(bf16.scalars[i] - fp32.scalars[i]), allowed = 4 * u * bound.scalars[i] + 1e-5
            worst = max(worst, error / allowed)
            XCTAssertLessThanOrEqual(error, allowed, "\(label)[\(i)]: bf16 \(bf16.scalars[i]) vs fp32 \(fp32.scalars[i])",
                                     file: file, line: line)
        }
        // The bound is not vacuous: bf16 does differ from fp32 by a visible fraction of it.
        XCTAssertGreaterThan(worst, 0.01, "\(label): bf16 indistinguishable from fp32", file: file, line: line)
    }

    func testLinearForwardAndGradients() throws {
        let bf = try backend()
        let x = randomTensor([37, 53], seed: 1), w = randomTensor([29, 53], seed: 2), b = randomTensor([29], seed: 3)
        let dy = randomTensor([37, 29], seed: 4)
        let (yb, pb) = valueWithPullback(at: x, w, b) { x, w, b in linear(x, weight: w, bias: b, on: bf) }
        let (yf, pf) = valueWithPullback(at: x, w, b) { x, w, b in linear(x, weight: w, bias: b, on: cpu) }
        let (ax, aw) = (x.map(abs), w.map(abs))
        assertWithinBF16Bound(yb, yf, bound: linear(ax, weight: aw, bias: Tensor(zeros: [29]), on: cpu), "y")
        let (gxb, gwb, gbb) = pb(dy), (gxf, gwf, gbf) = pf(dy)
        let ady = dy.map(abs)
        assertWithinBF16Bound(gxb, gxf, bound: matmul(ady, aw, on: cpu), "dx")
        assertWithinBF16Bound(gwb, gwf, bound: matmul(ady.transposedForTest(), ax, on: cpu), "dw")
        XCTAssertEqual(gbb, gbf, "the bias gradient sums fp32 dy: exact")
    }

    func testConvolutionsForwardAndGradients() throws {
        let bf = try backend()
        // Channels-last input (B, H, W, C); 6 channels take the direct kernels, 1 the GEMM path.
        for c in [6, 1] {
            let x = randomTensor([3, 9, 8, c], seed: 10), w = randomTensor([5, c, 3, 3], seed: 11), b = randomTensor([5], seed: 12)
            @differentiable(reverse, wrt: (x, w, b))
            func f(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ on: Backend) -> Tensor {
                conv2d(x, weight: w, bias: b, stride: 2, padding: 1, on: on)
            }
            let (yb, pb) = valueWithPullback(at: x, w, b) { f($0, $1, $2, bf) }
            let (yf, pf) = valueWithPullback(at: x, w, b) { f($0, $1, $2, cpu) }
            let (ax, aw) = (x.map(abs), w.map(abs))
            assertWithinBF16Bound(yb, yf, bound: f(ax, aw, Tensor(zeros: [5]), cpu), "conv y, C = \(c)")
            let dy = randomTensor(yf.shape, seed: 13)
            let (dxb, dwb, _) = pb(dy), (dxf, dwf, _) = pf(dy)
            // Bounds: the same products on |dy| (the pullbacks are linear in dy and in the other input).
            let (_, pa) = valueWithPullback(at: ax, aw, Tensor(zeros: [5])) { f($0, $1, $2, cpu) }
            let (bx, bw, _) = pa(dy.map(abs))
            assertWithinBF16Bound(dxb, dxf, bound: bx, "conv dx, C = \(c)")
            assertWithinBF16Bound(dwb, dwf, bound: bw, "conv dW, C = \(c)")

            let xt = randomTensor([3, 4, 5, 5], seed: 14), wt = randomTensor([5, c, 3, 3], seed: 15), bt = randomTensor([c], seed: 16)
            @differentiable(reverse, wrt: (x, w, b))
            func t(_ x: Tensor, _ w: Tensor, _ b: Tensor, _ on: Backend) -> Tensor {
                convTranspose2d(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: on)
            }
            let (tb, tpb) = valueWithPullback(at: xt, wt, bt) { t($0, $1, $2, bf) }
            let (tf, tpf) = valueWithPullback(at: xt, wt, bt) { t($0, $1, $2, cpu) }
            let (axt, awt) = (xt.map(abs), wt.map(abs))
            assertWithinBF16Bound(tb, tf, bound: t(axt, awt, Tensor(zeros: [c]), cpu), "convT y, O = \(c)")
            let dyt = randomTensor(tf.shape, seed: 17)
            let (tdxb, tdwb, _) = tpb(dyt), (tdxf, tdwf, _) = tpf(dyt)
            let (_, tpa) = valueWithPullback(at: axt, awt, Tensor(zeros: [c])) { t($0, $1, $2, cpu) }
            let (tbx, tbw, _) = tpa(dyt.map(abs))
            assertWithinBF16Bound(tdxb, tdxf, bound: tbx, "convT dx, O = \(c)")
            assertWithinBF16Bound(tdwb, tdwf, bound: tbw, "convT dW, O = \(c)")
        }
    }

    /// conv2dReLU and convTranspose2dReLU in bf16 (their pullbacks mask,
    /// round and sum dy in one pass) give the bits of relu after the plain
    /// op, whose pullback does the three passes; 16 and 32 channels take
    /// the pass's AVX-512 path, 6 its portable one, 1 the GEMM path.
    func testFusedReLUGradientsAreTheUnfusedBits() throws {
        let bf = try backend()
        for c in [16, 32, 6, 1] {
            let x = randomTensor([3, 9, 8, 4], seed: 20), w = randomTensor([c, 4, 3, 3], seed: 21), b = randomTensor([c], seed: 22)
            let (yf, pf) = valueWithPullback(at: x, w, b) { x, w, b in conv2dReLU(x, weight: w, bias: b, stride: 2, padding: 1, on: bf) }
            let (yu, pu) = valueWithPullback(at: x, w, b) { x, w, b in relu(conv2d(x, weight: w, bias: b, stride: 2, padding: 1, on: bf)) }
            XCTAssertEqual(yf.scalars.map(\.bitPattern), yu.scalars.map(\.bitPattern), "conv y, O = \(c)")
            let dy = randomTensor(yf.shape, seed: 23)
            let (fx, fw, fb) = pf(dy), (ux, uw, ub) = pu(dy)
            for (name, a, e) in [("dx", fx, ux), ("dW", fw, uw), ("db", fb, ub)] {
                XCTAssertEqual(a.scalars.map(\.bitPattern), e.scalars.map(\.bitPattern), "conv \(name), O = \(c)")
            }
            XCTAssertGreaterThan(fb.scalars.map(abs).max()!, 0, "a bias gradient that is not all zero, O = \(c)")

            let xt = randomTensor([3, 4, 5, 5], seed: 24), wt = randomTensor([5, c, 3, 3], seed: 25), bt = randomTensor([c], seed: 26)
            let (tf, tpf) = valueWithPullback(at: xt, wt, bt) { x, w, b in
                convTranspose2dReLU(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: bf)
            }
            let (tu, tpu) = valueWithPullback(at: xt, wt, bt) { x, w, b in
                relu(convTranspose2d(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: bf))
            }
            XCTAssertEqual(tf.scalars.map(\.bitPattern), tu.scalars.map(\.bitPattern), "convT y, O = \(c)")
            let dyt = randomTensor(tf.shape, seed: 27)
            let (gx, gw, gb) = tpf(dyt), (hx, hw, hb) = tpu(dyt)
            for (name, a, e) in [("dx", gx, hx), ("dW", gw, hw), ("db", gb, hb)] {
                XCTAssertEqual(a.scalars.map(\.bitPattern), e.scalars.map(\.bitPattern), "convT \(name), O = \(c)")
            }
        }
    }

    /// linearReLU in bf16 (its pullback masks, rounds and sums dy in one
    /// pass) gives the bits of relu after linear: 32 and 3,136 outputs take
    /// the pass's AVX-512 path (the conv VAE's first decoder layer is 3,136
    /// wide), 29 its portable one.
    func testFusedLinearReLUGradientsAreTheUnfusedBits() throws {
        let bf = try backend()
        for h in [32, 29, 3136] {
            let x = randomTensor([37, 20], seed: 30), w = randomTensor([h, 20], seed: 31), b = randomTensor([h], seed: 32)
            let (yf, pf) = valueWithPullback(at: x, w, b) { x, w, b in linearReLU(x, weight: w, bias: b, on: bf) }
            let (yu, pu) = valueWithPullback(at: x, w, b) { x, w, b in relu(linear(x, weight: w, bias: b, on: bf)) }
            XCTAssertEqual(yf.scalars.map(\.bitPattern), yu.scalars.map(\.bitPattern), "y, H = \(h)")
            let dy = randomTensor(yf.shape, seed: 33)
            let (fx, fw, fb) = pf(dy), (ux, uw, ub) = pu(dy)
            for (name, a, e) in [("dx", fx, ux), ("dW", fw, uw), ("db", fb, ub)] {
                XCTAssertEqual(a.scalars.map(\.bitPattern), e.scalars.map(\.bitPattern), "\(name), H = \(h)")
            }
            // The parameters-only derivative (the first layer, whose input is data) agrees.
            let (gw, gb) = gradient(at: w, b) { w, b in sum(linearReLU(x, weight: w, bias: b, on: bf) * dy) }
            XCTAssertEqual(gw.scalars.map(\.bitPattern), fw.scalars.map(\.bitPattern), "dW (parameters only), H = \(h)")
            XCTAssertEqual(gb.scalars.map(\.bitPattern), fb.scalars.map(\.bitPattern), "db (parameters only), H = \(h)")
        }
    }

    func testRoundingIsToNearestEven() {
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even significand (1);
        // 1 + 3·2⁻⁸ goes up to 1 + 2⁻⁶; NaN stays NaN; infinities stay.
        let values: [Float] = [1 + 1.0 / 256, 1 + 3.0 / 256, -2.5, .infinity, .nan, 0, -0.0, 1e-40]
        var rounded = [UInt16](repeating: 0, count: values.count)
        var back = [Float](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { BFloat16Buffers.round($0.baseAddress!, into: &rounded, count: values.count) }
        rounded.withUnsafeBufferPointer { BFloat16Buffers.widen($0.baseAddress!, into: &back, count: values.count) }
        XCTAssertEqual(back[0], 1)
        XCTAssertEqual(back[1], 1 + 1.0 / 64)
        XCTAssertEqual(back[2], -2.5)
        XCTAssertEqual(back[3], .infinity)
        XCTAssertTrue(back[4].isNaN)
        XCTAssertEqual(back[5], 0)
        XCTAssertEqual(back[6].sign, .minus)
        // Sums of blocks: in fp32, rank by rank, rounded once.
        let blocks: [UInt16] = [0x3F80, 0x4000, 0x3F80, 0x4040]  // ranks 0, 1 of two values: (1, 2), (1, 3)
        var sums = [UInt16](repeating: 0, count: 2)
        blocks.withUnsafeBufferPointer { BFloat16Buffers.sumBlocks($0.baseAddress!, ranks: 2, count: 2, into: &sums) }
        XCTAssertEqual(sums, [0x4000, 0x40A0])  // 2 and 5
    }

    func testBF16NeedsNativeInstructions() {
        let old = CPU.Features(avx512BF16: false, amxBF16: false, modelName: "Test CPU")
        XCTAssertThrowsError(try Backend(precision: .bf16, cpu: old)) { error in
            XCTAssertEqual(error as? BackendError, .bf16Unsupported(cpu: "Test CPU"))
            XCTAssertTrue("\(error)".contains("AVX512_BF16 or AMX-BF16"), "\(error)")
        }
        XCTAssertNoThrow(try Backend(precision: .bf16, cpu: CPU.Features(avx512BF16: false, amxBF16: true, modelName: "AMX")))
        XCTAssertThrowsError(try Backend(library: .openblas, precision: .bf16)) {
            XCTAssertEqual($0 as? BackendError, .bf16NeedsOneDNN)
        }
        XCTAssertNoThrow(try Backend(precision: .fp32, cpu: old))
    }
}

extension Tensor {
    /// The transpose of a matrix (test reference only).
    func transposedForTest() -> Tensor {
        let (r, c) = (shape[0], shape[1])
        return Tensor(shape: [c, r], scalars: (0..<(r * c)).map { scalars[($0 % r) * c + $0 / r] })
    }
}
