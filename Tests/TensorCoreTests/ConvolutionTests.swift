import _Differentiation
import XCTest
import TestSupport
@testable import TensorCore

/// The channels-last ops seen through NCHW tensors, the layout of the
/// definitions below (the transposes are differentiable, so gradients are
/// checked through them).
@differentiable(reverse)
func conv2dNCHW(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
    channelsFirst(conv2d(channelsLast(x, on: backend), weight: weight, bias: bias, stride: stride, padding: padding, on: backend), on: backend)
}

@differentiable(reverse)
func conv2dReLUNCHW(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
    channelsFirst(conv2dReLU(channelsLast(x, on: backend), weight: weight, bias: bias, stride: stride, padding: padding, on: backend), on: backend)
}

@differentiable(reverse)
func convTranspose2dNCHW(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int,
                         on backend: Backend) -> Tensor {
    channelsFirst(convTranspose2d(channelsLast(x, on: backend), weight: weight, bias: bias, stride: stride, padding: padding,
                                  outputPadding: outputPadding, on: backend), on: backend)
}

@differentiable(reverse)
func convTranspose2dReLUNCHW(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int,
                             on backend: Backend) -> Tensor {
    channelsFirst(convTranspose2dReLU(channelsLast(x, on: backend), weight: weight, bias: bias, stride: stride, padding: padding,
                                      outputPadding: outputPadding, on: backend), on: backend)
}

/// The fp32 backends: oneDNN (the default) and OpenBLAS (im2col).
let fp32Backends = [try! Backend(library: .onednn), try! Backend(library: .openblas)]

/// Convolutions against a direct (definition-by-loops) implementation and
/// their VJPs against finite differences, on every fp32 backend.
final class ConvolutionTests: XCTestCase {
    /// y[b,o,oy,ox] = bias[o] + Σ_{c,i,j} w[o,c,i,j] · x[b,c,oy·s−p+i, ox·s−p+j]
    func directConv(_ x: Tensor, _ w: Tensor, _ bias: Tensor, stride s: Int, padding p: Int) -> Tensor {
        let (b, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1)
        var y = [Float](repeating: 0, count: b * o * oh * ow)
        for n in 0..<b { for oc in 0..<o { for oy in 0..<oh { for ox in 0..<ow {
            var acc = bias.scalars[oc]
            for ic in 0..<c { for i in 0..<kh { for j in 0..<kw {
                let (yy, xx) = (oy * s - p + i, ox * s - p + j)
                if yy >= 0 && yy < h && xx >= 0 && xx < wd {
                    acc += w.scalars[((oc * c + ic) * kh + i) * kw + j] * x.scalars[((n * c + ic) * h + yy) * wd + xx]
                }
            } } }
            y[((n * o + oc) * oh + oy) * ow + ox] = acc
        } } } }
        return Tensor(shape: [b, o, oh, ow], scalars: y)
    }

    /// ConvTranspose2d by definition: every input pixel spreads its kernel.
    func directConvTranspose(_ x: Tensor, _ w: Tensor, _ bias: Tensor, stride s: Int, padding p: Int, outputPadding op: Int) -> Tensor {
        let (b, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
        let (oh, ow) = ((h - 1) * s - 2 * p + kh + op, (wd - 1) * s - 2 * p + kw + op)
        var y = [Float](repeating: 0, count: b * o * oh * ow)
        for n in 0..<b { for oc in 0..<o { for q in 0..<(oh * ow) { y[(n * o + oc) * oh * ow + q] = bias.scalars[oc] } } }
        for n in 0..<b { for ic in 0..<c { for iy in 0..<h { for ix in 0..<wd {
            let v = x.scalars[((n * c + ic) * h + iy) * wd + ix]
            for oc in 0..<o { for i in 0..<kh { for j in 0..<kw {
                let (yy, xx) = (iy * s - p + i, ix * s - p + j)
                if yy >= 0 && yy < oh && xx >= 0 && xx < ow {
                    y[((n * o + oc) * oh + yy) * ow + xx] += v * w.scalars[((ic * o + oc) * kh + i) * kw + j]
                }
            } } }
        } } } }
        return Tensor(shape: [b, o, oh, ow], scalars: y)
    }

    func assertClose(_ a: Tensor, _ b: Tensor, _ label: String, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, label, line: line)
        for i in 0..<min(a.count, b.count) {
            XCTAssertEqual(a.scalars[i], b.scalars[i], accuracy: 1e-5, "\(label)[\(i)]", line: line)
        }
    }

    func testForwardMatchesDefinition() {
        for cpu in fp32Backends {
            for (s, p, h, w) in [(2, 1, 8, 8), (1, 1, 5, 7), (2, 0, 7, 6), (1, 0, 4, 4), (3, 2, 9, 10)] {
                let x = randomTensor([2, 3, h, w], seed: 20), k = randomTensor([4, 3, 3, 3], seed: 21), b = randomTensor([4], seed: 22)
                assertClose(conv2dNCHW(x, weight: k, bias: b, stride: s, padding: p, on: cpu), directConv(x, k, b, stride: s, padding: p),
                            "conv2d s\(s) p\(p) \(h)×\(w)")
                let kt = randomTensor([3, 4, 3, 3], seed: 23)
                for op in 0..<s {
                    assertClose(convTranspose2dNCHW(x, weight: kt, bias: b, stride: s, padding: p, outputPadding: op, on: cpu),
                                directConvTranspose(x, kt, b, stride: s, padding: p, outputPadding: op),
                                "convTranspose2d s\(s) p\(p) op\(op) \(h)×\(w)")
                }
            }
        }
    }

    func testConvGradients() {
        for cpu in fp32Backends {
            let x = randomTensor([2, 2, 5, 6], seed: 30), w = randomTensor([3, 2, 3, 3], seed: 31), b = randomTensor([3], seed: 32)
            let r = randomTensor([2, 3, 3, 3], seed: 33)  // output of stride 2, padding 1 on 5×6 is 3×3
            assertGradientMatchesFiniteDifferences(of: { x in sum(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: x, "conv2d ∂x")
            assertGradientMatchesFiniteDifferences(of: { w in sum(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: w, "conv2d ∂w")
            assertGradientMatchesFiniteDifferences(of: { b in sum(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: b, "conv2d ∂b")
            // The (weight, bias) derivative used when x is data agrees with the full one.
            let (dw, db) = gradient(at: w, b) { w, b in sum(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }
            let (_, dwFull, dbFull) = gradient(at: x, w, b) { x, w, b in sum(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }
            XCTAssertEqual(dw, dwFull)
            XCTAssertEqual(db, dbFull)
        }
    }

    func testFusedReLUVariants() {
        for cpu in fp32Backends {
            let x = randomTensor([2, 2, 5, 6], seed: 60), w = randomTensor([3, 2, 3, 3], seed: 61), b = randomTensor([3], seed: 62)
            let r = randomTensor([2, 3, 3, 3], seed: 63)
            XCTAssertEqual(conv2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu),
                           relu(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu)))
            // ReLU kinks break finite differences within h of zero: these inputs keep every pre-activation away from it.
            let pre = conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu)
            XCTAssertGreaterThan(pre.scalars.map { abs($0) }.min()!, 0.002)
            assertGradientMatchesFiniteDifferences(of: { x in sum(conv2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: x, h: 1e-3, "conv2dReLU ∂x")
            assertGradientMatchesFiniteDifferences(of: { w in sum(conv2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: w, h: 1e-3, "conv2dReLU ∂w")
            assertGradientMatchesFiniteDifferences(of: { b in sum(conv2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }, at: b, h: 1e-3, "conv2dReLU ∂b")
            let (dw, db) = gradient(at: w, b) { w, b in sum(conv2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) * r) }
            let (_, dwRef, dbRef) = gradient(at: x, w, b) { x, w, b in sum(relu(conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu)) * r) }
            for (a, e) in zip(dw.scalars + db.scalars, dwRef.scalars + dbRef.scalars) { XCTAssertEqual(a, e, accuracy: 1e-5) }

            let xt = randomTensor([2, 3, 3, 2], seed: 64), wt = randomTensor([3, 2, 3, 3], seed: 65), bt = randomTensor([2], seed: 66)
            let rt = randomTensor([2, 2, 6, 4], seed: 67)
            XCTAssertEqual(convTranspose2dReLUNCHW(xt, weight: wt, bias: bt, stride: 2, padding: 1, outputPadding: 1, on: cpu),
                           relu(convTranspose2dNCHW(xt, weight: wt, bias: bt, stride: 2, padding: 1, outputPadding: 1, on: cpu)))
            let (gx, gw, gb) = gradient(at: xt, wt, bt) { x, w, b in
                sum(convTranspose2dReLUNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu) * rt)
            }
            let (ex, ew, eb) = gradient(at: xt, wt, bt) { x, w, b in
                sum(relu(convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu)) * rt)
            }
            for (a, e) in zip(gx.scalars + gw.scalars + gb.scalars, ex.scalars + ew.scalars + eb.scalars) {
                XCTAssertEqual(a, e, accuracy: 1e-5)
            }
        }
    }

    func testConvTransposeGradients() {
        for cpu in fp32Backends {
            let x = randomTensor([2, 3, 3, 2], seed: 40), w = randomTensor([3, 2, 3, 3], seed: 41), b = randomTensor([2], seed: 42)
            let r = randomTensor([2, 2, 6, 4], seed: 43)  // (3−1)·2 − 2 + 3 + 1 = 6, (2−1)·2 − 2 + 3 + 1 = 4
            let f = { (x: Tensor, w: Tensor, b: Tensor) in convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu) }
            XCTAssertEqual(f(x, w, b).shape, [2, 2, 6, 4])
            assertGradientMatchesFiniteDifferences(of: { x in sum(convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu) * r) }, at: x, "convT ∂x")
            assertGradientMatchesFiniteDifferences(of: { w in sum(convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu) * r) }, at: w, "convT ∂w")
            assertGradientMatchesFiniteDifferences(of: { b in sum(convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu) * r) }, at: b, "convT ∂b")
        }
    }

    /// Chunked and whole-batch im2col kernels agree: the chunks only split
    /// the GEMMs along the images (weight gradients accumulate chunk by chunk,
    /// so they are compared with a tolerance).
    func testChunkingDoesNotChangeResults() {
        let x = randomTensor([5, 2, 6, 6], seed: 50), w = randomTensor([3, 2, 3, 3], seed: 51), b = randomTensor([3], seed: 52)
        let wt = randomTensor([2, 3, 3, 3], seed: 53), bt = randomTensor([3], seed: 54)
        func run(on cpu: Backend) -> [Tensor] {
            let (y, pb) = valueWithPullback(at: x, w, b) { x, w, b in conv2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, on: cpu) }
            let (dx, dw, db) = pb(y)
            let (yt, pbt) = valueWithPullback(at: x, wt, bt) { x, w, b in
                convTranspose2dNCHW(x, weight: w, bias: b, stride: 2, padding: 1, outputPadding: 1, on: cpu)
            }
            let (dxt, dwt, dbt) = pbt(yt)
            return [y, dx, dw, db, yt, dxt, dwt, dbt]
        }
        // The chunks are the OpenBLAS (im2col) kernels'; oneDNN's must agree too.
        let whole = run(on: try! Backend(library: .openblas))
        let chunked = run(on: try! Backend(library: .openblas, convolutionColumnBudget: 1))  // one image per chunk
        let dnnl = run(on: try! Backend(library: .onednn))
        for (i, (a, c)) in zip(whole, dnnl).enumerated() {
            XCTAssertEqual(a.shape, c.shape)
            for j in 0..<a.count {
                XCTAssertEqual(a.scalars[j], c.scalars[j], accuracy: 1e-5 * max(1, abs(a.scalars[j])), "oneDNN result \(i)[\(j)]")
            }
        }
        for (i, (a, c)) in zip(whole, chunked).enumerated() {
            XCTAssertEqual(a.shape, c.shape)
            for j in 0..<a.count { XCTAssertEqual(a.scalars[j], c.scalars[j], accuracy: 1e-5 * max(1, abs(a.scalars[j])), "result \(i)[\(j)]") }
        }
    }

    /// The bf16 weight gradient's GEMM (tap-major im2col, then the permute to
    /// PyTorch's order) against oneDNN's own backward-weights kernel, both in
    /// f32 so that they agree to rounding: kernels taller than wide, windows
    /// past every border, strides 1 and 2, and the transposed convolution's
    /// adjoint roles (its input gradient as the "input").
    func testWeightGradientByGEMMMatchesTheDirectKernel() throws {
        let backend = try Backend(library: .onednn, precision: .fp32)
        for (i, (c, o, kh, kw, stride, padding, h, w)) in [(6, 5, 3, 3, 2, 1, 9, 8), (7, 4, 4, 4, 2, 1, 10, 10),
                                                           (5, 3, 5, 3, 1, 2, 6, 7)].enumerated() {
            let x = randomTensor([3, h, w, c], seed: UInt32(40 + i)), weight = randomTensor([o, c, kh, kw], seed: UInt32(50 + i))
            let bias = randomTensor([o], seed: UInt32(60 + i))
            let (y, pullback) = valueWithPullback(at: weight) {
                conv2d(x, weight: $0, bias: bias, stride: stride, padding: padding, on: backend)
            }
            let dy = randomTensor(y.shape, seed: UInt32(70 + i))
            let direct = pullback(dy)
            let shape = ConvolutionShape(batch: 3, height: h, width: w, channels: c, outputHeight: y.shape[1],
                                         outputWidth: y.shape[2], outputChannels: o, kernelHeight: kh, kernelWidth: kw,
                                         stride: stride, padding: padding)
            var gemm = [Float](repeating: .nan, count: weight.count)
            gemm.withUnsafeMutableBufferPointer {
                shape.weightGradientByGEMM(input: ActivationOperand(x, on: backend),
                                           gradient: ActivationOperand(dy, on: backend), into: $0.baseAddress!, on: backend)
            }
            XCTAssertEqual(direct.count, gemm.count)
            for j in 0..<gemm.count {
                XCTAssertEqual(gemm[j], direct.scalars[j], accuracy: 1e-4 * max(1, abs(direct.scalars[j])),
                               "case \(i), dW[\(j)]")
            }
        }
    }
}
