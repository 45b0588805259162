import CKernels

/// Adam's elementwise update over flat buffers (AVX-512 when the CPU has it,
/// portable C otherwise; the same bits either way, see kernels.h):
/// g' = g·scale; m ← m + (1−β1)(g' − m); v ← β2·v + (1−β2)·g'²;
/// p ← p − stepSize · m / (√v · inverseBiasCorrection2Sqrt + ε).
public enum AdamKernel {
    public struct Constants: Sendable {
        public var gradientScale, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, inverseBiasCorrection2Sqrt, epsilon: Float

        public init(gradientScale: Float, oneMinusBeta1: Float, beta2: Float, oneMinusBeta2: Float, stepSize: Float,
                    inverseBiasCorrection2Sqrt: Float, epsilon: Float) {
            self.gradientScale = gradientScale
            self.oneMinusBeta1 = oneMinusBeta1
            self.beta2 = beta2
            self.oneMinusBeta2 = oneMinusBeta2
            self.stepSize = stepSize
            self.inverseBiasCorrection2Sqrt = inverseBiasCorrection2Sqrt
            self.epsilon = epsilon
        }
    }

    public static func apply(parameters p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                             m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int, _ c: Constants) {
        ck_adam_update(p, g, m, v, count,
                       ck_adam_constants(gradient_scale: c.gradientScale, one_minus_beta1: c.oneMinusBeta1,
                                         beta2: c.beta2, one_minus_beta2: c.oneMinusBeta2, step_size: c.stepSize,
                                         inverse_bias_correction2_sqrt: c.inverseBiasCorrection2Sqrt,
                                         epsilon: c.epsilon))
    }
}

extension AdamKernel {
    /// The same update with a bf16 gradient (widened exactly on the fly).
    public static func apply(parameters p: UnsafeMutablePointer<Float>, bf16Gradient g: UnsafePointer<UInt16>,
                             m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int, _ c: Constants) {
        ck_adam_update_bf16_gradient(p, g, m, v, count,
                                     ck_adam_constants(gradient_scale: c.gradientScale, one_minus_beta1: c.oneMinusBeta1,
                                                       beta2: c.beta2, one_minus_beta2: c.oneMinusBeta2,
                                                       step_size: c.stepSize,
                                                       inverse_bias_correction2_sqrt: c.inverseBiasCorrection2Sqrt,
                                                       epsilon: c.epsilon))
    }
}

/// 1 if any of `count` floats is infinite or NaN.
public func anyNonFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
    ck_any_non_finite(x, count) != 0
}

/// bfloat16 conversions and sums of flat buffers (the gradient exchange of
/// `--gradient-precision bf16`).
public enum BFloat16Buffers {
    /// Round to nearest even.
    public static func round(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_bf16(source, destination, count)
    }

    /// Exact.
    public static func widen(_ source: UnsafePointer<UInt16>, into destination: UnsafeMutablePointer<Float>, count: Int) {
        ck_bf16_to_f32(source, destination, count)
    }

    /// out = bf16(Σ over `ranks` consecutive blocks of `count`, in fp32, in block order).
    public static func sumBlocks(_ blocks: UnsafePointer<UInt16>, ranks: Int, count: Int,
                                 into out: UnsafeMutablePointer<UInt16>) {
        ck_sum_bf16_blocks(blocks, ranks, count, out)
    }
}

/// Sums of same-length float arrays (the shared-memory gradient reduction).
public enum SegmentSum {
    /// out[i] = ((segments[0][offset + i] + segments[1][offset + i]) + …) for
    /// i < count: in rank order, so every rank that sums the same arrays gets
    /// the same bits. `out` may be one of the arrays at `offset`.
    public static func sum(_ segments: [UnsafeMutablePointer<Float>], offset: Int, count: Int,
                           into out: UnsafeMutablePointer<Float>) {
        guard count > 0, !segments.isEmpty else { return }
        var starts: [UnsafeMutablePointer<Float>?] = segments.map { $0 + offset }
        starts.withUnsafeMutableBufferPointer { ck_sum_segments($0.baseAddress!, segments.count, count, out) }
    }
}

/// The first half of a count row's softmax: returns the row's largest logit
/// and writes shares[j] = fastExp(l[j] − top) (`ck_softmax_exponentials`:
/// the bits of the plain Swift loops).
public func softmaxExponentials(_ logits: UnsafePointer<Float>, width: Int, into shares: UnsafeMutablePointer<Float>)
    -> Float
{
    ck_softmax_exponentials(logits, width, shares)
}

/// The multinomial's terms of one row, and its gradient when asked, from the
/// row's softmax `shares` and log-sum-exp (`ck_multinomial_row`); returns
/// the row's count total.
@discardableResult
public func multinomialRow(logits: UnsafePointer<Float>, counts: UnsafePointer<Float>, width: Int,
                           shares: UnsafePointer<Float>, lse: Double, terms: UnsafeMutablePointer<Float>,
                           gradient: UnsafeMutablePointer<Float>?) -> Double {
    ck_multinomial_row(logits, counts, width, shares, lse, terms, gradient)
}

/// The positions j of `values` whose bits are not zero (−0 and NaN count),
/// in order, into `positions` (`ck_dense_to_csr` on one row); false, with
/// `positions` unspecified, when there are more than `limit`.
public func nonzeroPositions(of values: UnsafeBufferPointer<Float>, limit: Int, into positions: inout [Int64]) -> Bool {
    positions.removeAll(keepingCapacity: true)
    guard let base = values.baseAddress, !values.isEmpty else { return true }
    let room = Swift.min(limit, values.count) + 16
    return withUnsafeTemporaryAllocation(of: Int32.self, capacity: room) { columns in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: room) { found in
            var starts: (Int64, Int64) = (0, 0)
            let count = withUnsafeMutableBytes(of: &starts) {
                ck_dense_to_csr(base, 1, values.count, Swift.max(limit, 0), $0.baseAddress!.assumingMemoryBound(to: Int64.self),
                                columns.baseAddress!, found.baseAddress!)
            }
            guard count >= 0 else { return false }
            positions.append(contentsOf: columns[0 ..< Int(count)].lazy.map { Int64($0) })
            return true
        }
    }
}

/// The Bernoulli likelihood's one sweep over `count` elements, from logits:
/// terms[i] = max(l, 0) − l·x + log1p(e^−|l|) and, if `gradient` is given,
/// gradient[i] = σ(l) − x (16 lanes with AVX-512; the bits of the scalar
/// formula with `fastExp` and `fastLog1p` either way).
public func bernoulliNegativeLogLikelihood(logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, count: Int,
                                          terms: UnsafeMutablePointer<Float>, gradient: UnsafeMutablePointer<Float>?) {
    ck_bernoulli_nll(logits, targets, count, terms, gradient)
}

extension AdamKernel {
    /// The step with the gradient summed, in rank order, from `segments`
    /// at `offset` on, and the updated parameters also written to `publish`:
    /// `SegmentSum.sum`, `apply` and a copy, with the same bits, in one pass
    /// over memory. Returns whether any summed gradient was infinite or NaN.
    @discardableResult
    public static func apply(parameters p: UnsafeMutablePointer<Float>,
                             summing segments: UnsafeBufferPointer<UnsafeMutablePointer<Float>?>, at offset: Int,
                             m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                             publish: UnsafeMutablePointer<Float>, _ c: Constants) -> Bool {
        ck_adam_sum_update(p, segments.baseAddress!, segments.count, offset, m, v, count,
                           ck_adam_constants(gradient_scale: c.gradientScale, one_minus_beta1: c.oneMinusBeta1,
                                             beta2: c.beta2, one_minus_beta2: c.oneMinusBeta2, step_size: c.stepSize,
                                             inverse_bias_correction2_sqrt: c.inverseBiasCorrection2Sqrt,
                                             epsilon: c.epsilon),
                           publish) != 0
    }
}
