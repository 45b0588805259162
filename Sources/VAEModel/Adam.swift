import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adam (Kingma & Ba 2015) with PyTorch's `torch.optim.Adam` semantics
/// (no weight decay, no AMSGrad): bias-corrected moments, ε added outside the
/// square root, the same operation order as PyTorch's single-tensor path
/// (`exp_avg.lerp_`, `denom = sqrt(v)/sqrt(bc2) + ε`, `p -= lr/bc1 · m/denom`).
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
        let biasCorrection2Sqrt = Float((1 - pow(Double(beta2), t)).squareRoot())
        let (b2, oneMinusB1, oneMinusB2, eps) = (beta2, 1 - beta1, 1 - beta2, epsilon)

        firstMoment.withUnsafeMutableBufferPointer { m in
            secondMoment.withUnsafeMutableBufferPointer { v in
                var index = 0
                model.walkParameters { _, tensor in
                    let offset = layout.entries[index].offset
                    index += 1
                    tensor.scalars.withUnsafeMutableBufferPointer { p in
                        let g = gradient.baseAddress! + offset
                        let m = m.baseAddress! + offset
                        let v = v.baseAddress! + offset
                        for i in 0..<p.count {
                            let gi = g[i] * gradientScale
                            let mi = m[i] + oneMinusB1 * (gi - m[i])
                            let vi = v[i] * b2 + oneMinusB2 * gi * gi
                            m[i] = mi
                            v[i] = vi
                            p[i] -= stepSize * (mi / (vi.squareRoot() / biasCorrection2Sqrt + eps))
                        }
                    }
                }
            }
        }
    }
}
