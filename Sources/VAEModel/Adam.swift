import _Differentiation
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adam (Kingma & Ba 2015) with PyTorch's `torch.optim.Adam` semantics
/// (no weight decay, no AMSGrad): bias-corrected moments, ε added outside the
/// square root, the operation order of PyTorch's single-tensor path
/// (`exp_avg.lerp_`, `denom = sqrt(v)/sqrt(bc2) + ε`, `p -= lr/bc1 · m/denom`),
/// except that sqrt(v)/sqrt(bc2) is computed as sqrt(v)·(1/sqrt(bc2)): within
/// one rounding of PyTorch's value, and one division fewer per element (the
/// divider is this memory-bound loop's other bottleneck).
///
/// The moments are flat buffers in the model's parameter-walk order; the
/// update walks the model once and updates each tensor's storage in place.
public struct Adam: Sendable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Number of updates taken.
    public var step: Int
    public var firstMoment: [Float]   // (P)
    public var secondMoment: [Float]  // (P)

    public init(parameterCount: Int, learningRate: Float = 1e-3,
                beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        step = 0
        firstMoment = [Float](repeating: 0, count: parameterCount)
        secondMoment = [Float](repeating: 0, count: parameterCount)
    }

    /// One update with gradient `gradientScale · gradient` (a flat buffer in
    /// walk order; the scale turns allreduced sums into means).
    public mutating func update<Model: ParameterWalking>(
        _ model: inout Model, gradient: UnsafeBufferPointer<Float>,
        gradientScale: Float, layout: ParameterLayout
    ) {
        precondition(gradient.count >= layout.count && firstMoment.count == layout.count,
                     "Adam: buffers do not match the parameter layout")
        step += 1
        // Scalars in Double, as PyTorch computes them in Python floats.
        let t = Double(step)
        let biasCorrection1 = 1 - pow(Double(beta1), t)
        let stepSize = Float(Double(learningRate) / biasCorrection1)
        let inverseBiasCorrection2Sqrt = Float(1 / (1 - pow(Double(beta2), t)).squareRoot())

        let constants = AdamKernel.Constants(
            gradientScale: gradientScale, oneMinusBeta1: 1 - beta1, beta2: beta2, oneMinusBeta2: 1 - beta2,
            stepSize: stepSize, inverseBiasCorrection2Sqrt: inverseBiasCorrection2Sqrt, epsilon: epsilon)
        firstMoment.withUnsafeMutableBufferPointer { m in
            secondMoment.withUnsafeMutableBufferPointer { v in
                var index = 0
                model.walkParameters { _, tensor in
                    let offset = layout.entries[index].offset
                    index += 1
                    tensor.scalars.withUnsafeMutableBufferPointer { p in
                        guard let base = p.baseAddress else { return }
                        AdamKernel.apply(parameters: base, gradient: gradient.baseAddress! + offset,
                                         m: m.baseAddress! + offset, v: v.baseAddress! + offset,
                                         count: p.count, constants)
                    }
                }
            }
        }
    }
}

/// Adam's elementwise update. A free function of plain pointers and
/// by-value constants, so that LLVM can hoist the constants and vectorize
/// the loop (with run-time overlap checks on the four pointers); inside the
/// walk's closure it could not, and stayed scalar.
enum AdamKernel {
    struct Constants {
        var gradientScale, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, inverseBiasCorrection2Sqrt, epsilon: Float
    }

    @inline(never)
    static func apply(parameters p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                      m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                      count: Int, _ c: Constants) {
        let (scale, omb1, b2, omb2) = (c.gradientScale, c.oneMinusBeta1, c.beta2, c.oneMinusBeta2)
        let (stepSize, inverseBC2, eps) = (c.stepSize, c.inverseBiasCorrection2Sqrt, c.epsilon)
        for i in 0..<count {
            let gi = g[i] * scale
            let mi = m[i] + omb1 * (gi - m[i])
            let vi = v[i] * b2 + omb2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= stepSize * (mi / (vi.squareRoot() * inverseBC2 + eps))
        }
    }
}
