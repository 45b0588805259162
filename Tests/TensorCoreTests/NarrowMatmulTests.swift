import _Differentiation
import CKernels
import Foundation
import XCTest
import TestSupport
@testable import TensorCore

/// The few-channel convolutions' bf16 products (`Backend.narrowMatmul`,
/// `ck_bf16_gemm_narrow_k`, `ck_bf16_gemm_tn_narrow`): their AVX512_BF16
/// paths against the portable C that spells out VDPBF16PS's arithmetic, bit
/// for bit; against oneDNN's matmul, bit for bit, alone and inside the ops;
/// and the dispatch, which keeps every other product on oneDNN.
final class NarrowMatmulTests: XCTestCase {
    /// bf16 values of mixed magnitudes and signs, with zeros of both signs,
    /// subnormals (read as zeros by the instruction) and pairs whose
    /// products are subnormal in f32 (flushed to zeros by it).
    func bf16Values(_ count: Int, seed: UInt32) -> [UInt16] {
        let uniform = randomTensor([max(count, 1)], low: 0, high: 1, seed: seed).scalars
        let values = randomTensor([max(count, 1)], low: -1, high: 1, seed: seed + 1).scalars
        return (0..<count).map { i -> UInt16 in
            let pick = uniform[i]
            if pick < 0.02 { return pick < 0.01 ? 0 : 0x8000 }
            if pick < 0.04 { return UInt16(1 + i % 0x7F) | (pick < 0.03 ? 0 : 0x8000) }  // subnormal
            // 2^-70 · (1 + v/2): two of these multiply to about 2^-140, subnormal in f32.
            let scale: Float = pick < 0.08 ? 0x1p-70 : (pick < 0.5 ? 1 : Float(1 << (i % 9)))
            let x = scale * (pick < 0.08 ? 1 + values[i] / 2 : values[i])
            return UInt16(truncatingIfNeeded: (x.bitPattern &+ 0x7FFF &+ ((x.bitPattern >> 16) & 1)) >> 16)
        }
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    /// The narrow kernels run with one kernel thread (`BLAS.threads`).
    override func setUp() { BLAS.setThreads(1) }
    override func tearDown() { BLAS.setThreads(ProcessInfo.processInfo.activeProcessorCount) }

    /// A bf16 backend with a profiler (whose kernel names show which kernels ran).
    func profiledBF16() throws -> (Backend, KernelProfiler) {
        guard CPU.hasNativeBF16 else { throw XCTSkip("this CPU has no native bf16") }
        let profiler = KernelProfiler()
        return (try Backend(precision: .bf16, profiler: profiler), profiler)
    }

    func testKernelsMatchTheirPortablePathsBitForBit() throws {
        guard CPU.Features.current.avx512BF16 else { throw XCTSkip("no AVX512_BF16: both entry points run the portable path") }
        // C = A (m, k) · op(B), B as (k, n) or (n, k); k past 512 has two blocks.
        for (m, k, n) in [(1, 1, 1), (5, 9, 32), (37, 27, 48), (100, 3, 70), (33, 64, 64), (19, 600, 20), (7, 1025, 5),
                          (12, 2, 17)] {
            let a = bf16Values(m * k, seed: UInt32(m * 7 + k)), b = bf16Values(k * n, seed: UInt32(n * 13 + k))
            let bias = randomTensor([n], seed: UInt32(n)).scalars
            for transposed in [false, true] {
                for (withBias, relu) in [(false, false), (true, true), (true, false), (false, true)] {
                    let (sk, sn) = transposed ? (1, k) : (n, 1)
                    var fast = [Float](repeating: .nan, count: m * (n + 3)), slow = fast
                    bias.withUnsafeBufferPointer { pb in
                        let p = withBias ? pb.baseAddress : nil
                        ck_bf16_gemm_narrow_k(a, m, k, b, sk, sn, n, p, relu ? 1 : 0, &fast, n + 3)
                        ck_bf16_gemm_narrow_k_portable(a, m, k, b, sk, sn, n, p, relu ? 1 : 0, &slow, n + 3)
                    }
                    XCTAssertEqual(bits(fast), bits(slow), "narrow k: \(m)×\(k)·\(k)×\(n) B transposed \(transposed), bias \(withBias), relu \(relu)")
                    for r in 0..<m { XCTAssertTrue(fast[r * (n + 3) + n ..< (r + 1) * (n + 3)].allSatisfy(\.isNaN), "writes past a row") }
                }
            }
        }
        // C (m, n) = Aᵀ · B, A (k, m) and B (k, n) with wider row strides.
        for (k, m, n) in [(1, 1, 1), (3001, 32, 9), (1537, 16, 27), (1025, 33, 12), (600, 5, 13), (513, 64, 32),
                          (2, 17, 1), (1024, 48, 25)] {
            let (lda, ldb) = (m + 2, n + 1)
            let a = bf16Values(k * lda, seed: UInt32(k + m)), b = bf16Values(k * ldb, seed: UInt32(k + n + 99))
            var fast = [Float](repeating: .nan, count: m * (n + 1)), slow = fast
            ck_bf16_gemm_tn_narrow(a, k, m, lda, b, n, ldb, &fast, n + 1)
            ck_bf16_gemm_tn_narrow_portable(a, k, m, lda, b, n, ldb, &slow, n + 1)
            XCTAssertEqual(bits(fast), bits(slow), "tn: \(m)×\(k)ᵀ·\(k)×\(n)")
            XCTAssertTrue((0..<m).allSatisfy { fast[$0 * (n + 1) + n].isNaN }, "writes past a row")
        }
    }

    /// The portable path is the instruction's arithmetic, spelled out: a
    /// check of its rules on values chosen to show each one.
    func testPortableArithmeticIsTheInstructions() {
        func bf(_ x: Float) -> UInt16 { UInt16(x.bitPattern >> 16) }
        func product(_ a: [UInt16], _ b: [UInt16]) -> Float {
            var c: Float = .nan
            ck_bf16_gemm_narrow_k_portable(a, 1, a.count, b, 1, a.count, 1, nil, 0, &c, 1)
            return c
        }
        // Within a pair the odd element goes first: after the first pair the
        // sum is 2^24; then + 1 is lost (2^24 + 1 rounds to even) and − 2^24
        // gives 0. The even element first would give (2^24 − 2^24) + 1 = 1.
        XCTAssertEqual(product([0, bf(16_777_216), bf(-16_777_216), bf(1)], [bf(1), bf(1), bf(1), bf(1)]), 0)
        XCTAssertEqual(product([0, bf(16_777_216), bf(1), bf(-16_777_216)], [bf(1), bf(1), bf(1), bf(1)]), 1)
        // An odd k: the last element pairs with a zero.
        XCTAssertEqual(product([bf(3), bf(5), bf(7)], [bf(2), bf(2), bf(2)]), 30)
        // Subnormal inputs are zeros; subnormal results are flushed.
        XCTAssertEqual(product([0x0040, 0], [bf(1024), 0]), 0, "2^-127 (subnormal) reads as zero: not 2^-117")
        XCTAssertEqual(product([bf(0x1p-70), 0], [bf(0x1p-70), 0]), 0, "2^-140 flushes to zero")
        XCTAssertEqual(product([bf(0x1p-60), 0], [bf(0x1p-60), 0]), 0x1p-120, "2^-120 is normal")
    }

    /// With one kernel thread, narrowMatmul gives oneDNN's bits for the
    /// products the ops make; other shapes stay on oneDNN.
    func testNarrowProductsAreOneDNNsBits() throws {
        let (bf, profiler) = try profiledBF16()
        func operand(_ rows: Int, _ columns: Int, _ seed: UInt32) -> Backend.MatrixOperand {
            bf.operand(randomTensor([rows, columns], seed: seed), rows: rows, columns: columns)
        }
        // (A, transposed, B, transposed, bias and ReLU, narrow)
        let cases: [(Backend.MatrixOperand, Bool, Backend.MatrixOperand, Bool, Bool, Bool)] = [
            (operand(3001, 9, 1), false, operand(32, 9, 2), true, true, true),  // conv forward
            (operand(2000, 32, 3), false, operand(32, 9, 4), false, false, true),  // convT forward
            (operand(2000, 9, 5), false, operand(32, 9, 6), true, false, true),  // convT input gradient
            (operand(5001, 32, 7), true, operand(5001, 9, 8), false, false, true),  // weight gradients
            (operand(1537, 48, 9), true, operand(1537, 27, 10), false, false, true),
            (operand(700, 65, 11), true, operand(700, 9, 12), false, false, false),  // m > 64
            (operand(300, 9, 13), false, operand(65, 9, 14), true, false, false),  // n > 64
            (operand(300, 65, 15), false, operand(65, 9, 16), false, false, false),  // k > 64
        ]
        for (index, (a, ta, b, tb, epilogue, narrow)) in cases.enumerated() {
            let m = ta ? a.columns : a.rows, n = tb ? b.rows : b.columns
            let bias = randomTensor([n], seed: 50 + UInt32(index)).scalars
            var expected = [Float](repeating: 0, count: m * n), actual = expected
            let before = profiler.kernels.keys.filter { $0.hasPrefix("narrow") }.count
            bias.withUnsafeBufferPointer { pb in
                let p = epilogue ? pb.baseAddress : nil
                bf.matmul(a, transposed: ta, b, transposed: tb, into: &expected, ldc: n, bias: p, relu: epilogue)
                bf.narrowMatmul(a, transposed: ta, b, transposed: tb, into: &actual, ldc: n, bias: p, relu: epilogue)
            }
            XCTAssertEqual(bits(actual), bits(expected), "case \(index): \(m)×\(n)")
            let after = profiler.kernels.keys.filter { $0.hasPrefix("narrow") }.count
            XCTAssertEqual(after > before, narrow, "case \(index): the narrow kernels \(narrow ? "run" : "do not run")")
        }
        // With more than one kernel thread oneDNN may split the sums: its kernels run.
        BLAS.setThreads(2)
        let (a, b) = (operand(5001, 32, 7), operand(5001, 9, 8))
        let calls = { (name: String) in profiler.kernels[name]?.calls ?? 0 }
        let before = (calls("matmul 32×5001ᵀ·5001×9"), calls("narrow 32×5001ᵀ·5001×9"))
        var c = [Float](repeating: 0, count: 32 * 9)
        bf.narrowMatmul(a, transposed: true, b, transposed: false, into: &c, ldc: 9)
        XCTAssertEqual(calls("matmul 32×5001ᵀ·5001×9"), before.0 + 1, "oneDNN's matmul ran")
        XCTAssertEqual(calls("narrow 32×5001ᵀ·5001×9"), before.1)
    }

    /// The few-channel convolution and transposed convolution (the conv
    /// VAE's first and last layers) in bf16: values and gradients are the
    /// bits of the same ops on oneDNN's matmul.
    func testFewChannelConvolutionsAreOneDNNsBits() throws {
        let (narrow, profiler) = try profiledBF16()
        var plain = narrow
        plain.narrowKernels = false
        plain.profiler = nil
        /// The op's value and (x, w, b) gradients on both backends, bit for bit.
        func assertSameBits(_ op: @escaping @differentiable(reverse) (Tensor, Tensor, Tensor) -> Tensor,
                            on narrowOp: @escaping @differentiable(reverse) (Tensor, Tensor, Tensor) -> Tensor,
                            at x: Tensor, _ w: Tensor, _ b: Tensor, seed: UInt32, _ label: String) {
            let (yn, pn) = valueWithPullback(at: x, w, b, of: narrowOp)
            let (yp, pp) = valueWithPullback(at: x, w, b, of: op)
            XCTAssertEqual(yn.scalars.map(\.bitPattern), yp.scalars.map(\.bitPattern), "\(label) y")
            let dy = randomTensor(yp.shape, seed: seed)
            let (gn, gp) = (pn(dy), pp(dy))
            for (name, a, e) in [("dx", gn.0, gp.0), ("dW", gn.1, gp.1), ("db", gn.2, gp.2)] {
                XCTAssertEqual(a.scalars.map(\.bitPattern), e.scalars.map(\.bitPattern), "\(label) \(name)")
            }
        }
        for c in [1, 3] {
            assertSameBits({ conv2dReLU($0, weight: $1, bias: $2, stride: 2, padding: 1, on: plain) },
                           on: { conv2dReLU($0, weight: $1, bias: $2, stride: 2, padding: 1, on: narrow) },
                           at: randomTensor([9, 14, 14, c], seed: 20), randomTensor([32, c, 3, 3], seed: 21),
                           randomTensor([32], seed: 22), seed: 23, "conv, C = \(c)")
            assertSameBits({ convTranspose2d($0, weight: $1, bias: $2, stride: 2, padding: 1, outputPadding: 1, on: plain) },
                           on: { convTranspose2d($0, weight: $1, bias: $2, stride: 2, padding: 1, outputPadding: 1, on: narrow) },
                           at: randomTensor([9, 7, 7, 32], seed: 24), randomTensor([32, c, 3, 3], seed: 25),
                           randomTensor([c], seed: 26), seed: 27, "convT, O = \(c)")
        }
        // Per channel count: the convolution's forward pass, weight and input
        // gradients, the transposed convolution's forward pass, input and
        // weight gradients, all narrow (three shapes, each twice).
        let narrowCalls = profiler.kernels.filter { $0.key.hasPrefix("narrow") }
        XCTAssertEqual(Set(narrowCalls.keys), ["narrow 441×9·9×32ᵀ", "narrow 32×441ᵀ·441×9", "narrow 441×32·32×9",
                                               "narrow 441×27·27×32ᵀ", "narrow 32×441ᵀ·441×27", "narrow 441×32·32×27"])
        XCTAssertEqual(narrowCalls.values.map(\.calls), [Int](repeating: 2, count: 6))
    }
}
