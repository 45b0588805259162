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
/// The moments are flat buffers in the model's parameter-walk order (or, for
/// a sharded optimizer, of this rank's slice); the elementwise work is
/// `AdamKernel`'s.
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

    /// Advances the step count and returns the step's elementwise constants
    /// for a gradient `gradientScale · g`. Scalars in Double, as PyTorch
    /// computes them in Python floats.
    public mutating func nextStep(gradientScale: Float) -> AdamKernel.Constants {
        step += 1
        let t = Double(step)
        let biasCorrection1 = 1 - pow(Double(beta1), t)
        return AdamKernel.Constants(
            gradientScale: gradientScale, oneMinusBeta1: 1 - beta1, beta2: beta2, oneMinusBeta2: 1 - beta2,
            stepSize: Float(Double(learningRate) / biasCorrection1),
            inverseBiasCorrection2Sqrt: Float(1 / (1 - pow(Double(beta2), t)).squareRoot()), epsilon: epsilon)
    }

    /// One update with gradient `gradientScale · gradient` (a flat buffer in
    /// walk order; the scale turns allreduced sums into means), walking the
    /// model's tensors and updating each in place.
    public mutating func update<Model: ParameterWalking>(
        _ model: inout Model, gradient: UnsafeBufferPointer<Float>,
        gradientScale: Float, layout: ParameterLayout
    ) {
        precondition(gradient.count >= layout.count, "Adam: the gradient does not match the parameter layout")
        update(&model, gradientScale: gradientScale, layout: layout) { p, offset, m, v, count, constants in
            AdamKernel.apply(parameters: p, gradient: gradient.baseAddress! + offset, m: m, v: v, count: count, constants)
        }
    }

    /// The same with a bf16 gradient.
    public mutating func update<Model: ParameterWalking>(
        _ model: inout Model, bf16Gradient gradient: UnsafeBufferPointer<UInt16>,
        gradientScale: Float, layout: ParameterLayout
    ) {
        precondition(gradient.count >= layout.count, "Adam: the gradient does not match the parameter layout")
        update(&model, gradientScale: gradientScale, layout: layout) { p, offset, m, v, count, constants in
            AdamKernel.apply(parameters: p, bf16Gradient: gradient.baseAddress! + offset, m: m, v: v, count: count,
                             constants)
        }
    }

    private mutating func update<Model: ParameterWalking>(
        _ model: inout Model, gradientScale: Float, layout: ParameterLayout,
        kernel: (UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int,
                 AdamKernel.Constants) -> Void
    ) {
        precondition(firstMoment.count == layout.count, "Adam: the moments do not match the parameter layout")
        let constants = nextStep(gradientScale: gradientScale)
        firstMoment.withUnsafeMutableBufferPointer { m in
            secondMoment.withUnsafeMutableBufferPointer { v in
                var index = 0
                model.walkParameters { _, tensor in
                    let offset = layout.entries[index].offset
                    index += 1
                    tensor.scalars.withUnsafeMutableBufferPointer { p in
                        guard let base = p.baseAddress else { return }
                        kernel(base, offset, m.baseAddress! + offset, v.baseAddress! + offset, p.count, constants)
                    }
                }
            }
        }
    }

    /// One update of the flat range `range` of the model's parameters, whose
    /// moments this optimizer holds from index 0 (a sharded optimizer's slice),
    /// in place, with gradient `gradientScale · gradient[i]` for flat index i.
    public mutating func update<Model: ParameterWalking>(
        _ model: inout Model, range: Range<Int>, gradient: UnsafePointer<Float>, gradientScale: Float,
        layout: ParameterLayout
    ) {
        update(&model, range: range, gradientScale: gradientScale, layout: layout) { p, start, m, v, count, constants in
            AdamKernel.apply(parameters: p, gradient: gradient + start, m: m, v: v, count: count, constants)
        }
    }

    /// The same update of `range`, with the gradient summed from `segments`
    /// (flat arrays, in rank order) and the updated values also written to
    /// `publish` at their flat positions: the shared-memory step's sum,
    /// update and copy in one pass, with their bits. Returns whether any
    /// summed gradient of the range was infinite or NaN (the step must then
    /// not be kept: the caller throws on every rank).
    public mutating func update<Model: ParameterWalking>(
        _ model: inout Model, range: Range<Int>, summing segments: [UnsafeMutablePointer<Float>],
        publish: UnsafeMutablePointer<Float>, gradientScale: Float, layout: ParameterLayout
    ) -> Bool {
        let starts: [UnsafeMutablePointer<Float>?] = segments
        var nonFinite = false
        starts.withUnsafeBufferPointer { starts in
            update(&model, range: range, gradientScale: gradientScale, layout: layout) { p, start, m, v, count, constants in
                if AdamKernel.apply(parameters: p, summing: starts, at: start, m: m, v: v, count: count,
                                    publish: publish + start, constants) { nonFinite = true }
            }
        }
        return nonFinite
    }

    /// The walk of a range update: `kernel` gets each tensor's part of
    /// `range` (its parameters, flat start, moments and length).
    private mutating func update<Model: ParameterWalking>(
        _ model: inout Model, range: Range<Int>, gradientScale: Float, layout: ParameterLayout,
        kernel: (UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int,
                 AdamKernel.Constants) -> Void
    ) {
        precondition(firstMoment.count == range.count, "Adam: the slice does not match the moments")
        let constants = nextStep(gradientScale: gradientScale)
        firstMoment.withUnsafeMutableBufferPointer { m in
            secondMoment.withUnsafeMutableBufferPointer { v in
                guard let m = m.baseAddress, let v = v.baseAddress else { return }
                model.withFlatRange(range, layout: layout) { p, start, count in
                    let local = start - range.lowerBound
                    kernel(p, start, m + local, v + local, count, constants)
                }
            }
        }
    }

    /// One update of a flat slice of parameters whose moments this optimizer
    /// holds from index 0 (a sharded optimizer's slice).
    public mutating func update(parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, count: Int,
                                gradientScale: Float) {
        precondition(firstMoment.count == count, "Adam: the slice does not match the moments")
        let constants = nextStep(gradientScale: gradientScale)
        firstMoment.withUnsafeMutableBufferPointer { m in
            secondMoment.withUnsafeMutableBufferPointer { v in
                guard count > 0 else { return }
                AdamKernel.apply(parameters: parameters, gradient: gradient, m: m.baseAddress!, v: v.baseAddress!,
                                 count: count, constants)
            }
        }
    }
}
