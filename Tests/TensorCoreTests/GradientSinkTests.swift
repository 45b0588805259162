import _Differentiation
import XCTest
import TestSupport
@testable import TensorCore

struct SinkTestParameters: Differentiable {
    var w1, b1, w2, b2: Tensor
}

/// The gradient of `loss` at `point` with the kernels writing into a sink
/// over a NaN-filled buffer of `count` floats (parameter i at offsets[i]):
/// the buffer after `complete`, and what the pullback returned.
func gradientThroughSink(at point: SinkTestParameters, offsets: [Int], count: Int, backend backend0: Backend,
                         _ loss: @escaping @differentiable(reverse) (SinkTestParameters, @noDerivative Backend) -> Float)
    -> (buffer: [Float], returned: SinkTestParameters.TangentVector)
{
    var buffer = [Float](repeating: .nan, count: count)
    var returned = SinkTestParameters.TangentVector.zero
    buffer.withUnsafeMutableBufferPointer { flat in
        let sink = GradientSink(buffer: flat.baseAddress!)
        var backend = backend0
        backend.gradientSink = sink
        sink.begin(parameters: [point.w1, point.b1, point.w2, point.b2], offsets: offsets)
        returned = gradient(at: point) { loss($0, backend) }
        sink.complete(with: [returned.w1, returned.b1, returned.w2, returned.b2])
        XCTAssertFalse(sink.nonFinite)
    }
    return (buffer, returned)
}

/// Gradients written straight into a flat buffer equal the ones autodiff returns.
final class GradientSinkTests: XCTestCase {
    func testLinearAndConvolutionGradientsLandInTheBuffer() {
        for backend0 in [cpu, try! Backend(library: .openblas)] {
            let x = randomTensor([4, 5, 6, 2], seed: 1)
            let w1 = randomTensor([3, 2, 3, 3], seed: 2), b1 = randomTensor([3], seed: 3)
            let w2 = randomTensor([7, 27], seed: 4), b2 = randomTensor([7], seed: 5)
            @differentiable(reverse, wrt: p)
            func loss(_ p: SinkTestParameters, on backend: Backend) -> Float {
                let h = conv2dReLU(x, weight: p.w1, bias: p.b1, stride: 2, padding: 1, on: backend)  // (4, 3, 3, 3)
                return sum(linearReLU(h.reshaped([4, 27]), weight: p.w2, bias: p.b2, on: backend))
            }
            let point = SinkTestParameters(w1: w1, b1: b1, w2: w2, b2: b2)
            let expected = gradient(at: point) { loss($0, on: backend0) }
            let (buffer, _) = gradientThroughSink(at: point, offsets: [0, 54, 57, 246], count: 253, backend: backend0) {
                loss($0, on: $1)
            }
            let flatExpected = [expected.w1, expected.b1, expected.w2, expected.b2].flatMap(\.scalars)
            XCTAssertEqual(flatExpected.count, 253)
            for i in 0..<253 {
                XCTAssertEqual(buffer[i], flatExpected[i], accuracy: 1e-5 * max(1, abs(flatExpected[i])), "\(backend0.library) [\(i)]")
            }
        }
    }

    /// A dense layer's weight used through `channelsLastColumns` and
    /// `channelsLastRows` (the conv VAE's dense layers): the permuted
    /// gradients land in the parameters' slots, in PyTorch's order, and a
    /// parameter used twice accumulates there.
    func testPermutedWeightGradientsLandInTheBuffer() {
        let x = randomTensor([4, 2, 3, 3], seed: 1)   // (B, H, W, C): P = 6, C = 3
        let w1 = randomTensor([5, 18], seed: 2), b1 = randomTensor([5], seed: 3)
        let w2 = randomTensor([18, 5], seed: 4), b2 = randomTensor([18], seed: 5)
        @differentiable(reverse, wrt: p)
        func loss(_ p: SinkTestParameters, on backend: Backend) -> Float {
            let h = linearReLU(x.reshaped([4, 18]), weight: channelsLastColumns(p.w1, channels: 3, on: backend), bias: p.b1,
                               on: backend)
            let rows = channelsLastRows(p.w2, channels: 3, on: backend)
            let bias = channelsLastRows(p.b2, channels: 3, on: backend)
            // w2 and b2 twice: the second write accumulates.
            return sum(linearReLU(h, weight: rows, bias: bias, on: backend))
                + sum(linear(h, weight: channelsLastRows(p.w2, channels: 3, on: backend), bias: bias, on: backend) * 0.5)
        }
        let point = SinkTestParameters(w1: w1, b1: b1, w2: w2, b2: b2)
        let expected = gradient(at: point) { loss($0, on: cpu) }
        let (buffer, returned) = gradientThroughSink(at: point, offsets: [0, 90, 95, 185], count: 203, backend: cpu) {
            loss($0, on: $1)
        }
        XCTAssertTrue(returned.w1.isSymbolicZero && returned.w2.isSymbolicZero && returned.b2.isSymbolicZero,
                      "written into the slots, not returned")
        let flatExpected = [expected.w1, expected.b1, expected.w2, expected.b2].flatMap(\.scalars)
        XCTAssertEqual(flatExpected.count, 203)
        for i in 0..<203 { XCTAssertEqual(buffer[i], flatExpected[i], accuracy: 1e-5 * max(1, abs(flatExpected[i])), "[\(i)]") }
    }

    func testUnwrittenSlotsAreZeroedAndNonFiniteIsSeen() {
        var buffer = [Float](repeating: 7, count: 6)
        buffer.withUnsafeMutableBufferPointer { flat in
            let sink = GradientSink(buffer: flat.baseAddress!)
            let a = Tensor(shape: [2], scalars: [1, 2]), b = Tensor(shape: [4], scalars: [1, 2, 3, 4])
            sink.begin(parameters: [a, b], offsets: [0, 2])
            sink.complete(with: [.zero, Tensor(shape: [4], scalars: [1, .infinity, 3, 4])])
            XCTAssertTrue(sink.nonFinite)
        }
        XCTAssertEqual(Array(buffer[0..<2]), [0, 0])
        XCTAssertEqual(buffer[3], .infinity)
    }

    func testChannelPermutesAreInverseAndDifferentiable() {
        for backend in [cpu, try! Backend(library: .openblas)] {
            let x = randomTensor([2, 3, 4, 5], seed: 9)
            let last = channelsLast(x, on: backend)
            XCTAssertEqual(last.shape, [2, 4, 5, 3])
            let (n, c, y, xx) = (1, 1, 2, 3)
            let lastIndex: Int = ((n * 4 + y) * 5 + xx) * 3 + c
            let firstIndex: Int = ((n * 3 + c) * 4 + y) * 5 + xx
            XCTAssertEqual(last.scalars[lastIndex], x.scalars[firstIndex])
            XCTAssertEqual(channelsFirst(last, on: backend), x)
            let r = randomTensor([2, 4, 5, 3], seed: 10)
            assertGradientMatchesFiniteDifferences(of: { sum(channelsLast($0, on: backend) * r) }, at: x, "channelsLast")
            assertGradientMatchesFiniteDifferences(of: { sum(channelsFirst($0, on: backend) * x) }, at: r, "channelsFirst")
        }
    }
}
