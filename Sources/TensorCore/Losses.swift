import _Differentiation

// The VAE's probabilistic primitives, fused and numerically stable, each
// forward op followed by its VJP. Legend: B batch, Z latent, D data dimensions.

// MARK: - reparameterization

/// z = mean + noise · exp(logVariance / 2), all (B, Z). The noise is an input
/// (drawn by the caller from the counter-based RNG), never drawn here.
@differentiable(reverse, wrt: (mean, logVariance))
public func reparameterize(mean: Tensor, logVariance: Tensor, noise: Tensor) -> Tensor {
    precondition(mean.shape == logVariance.shape && mean.shape == noise.shape,
                 "reparameterize: mean \(mean.shape), logVariance \(logVariance.shape), noise \(noise.shape)")
    return Tensor(shape: mean.shape) { z in
        mean.scalars.withUnsafeBufferPointer { mu in
            logVariance.scalars.withUnsafeBufferPointer { lv in
                noise.scalars.withUnsafeBufferPointer { eps in
                    for i in 0..<z.count { z[i] = mu[i] + eps[i] * fastExp(0.5 * lv[i]) }
                }
            }
        }
    }
}

@derivative(of: reparameterize, wrt: (mean, logVariance))
@usableFromInline
func _vjpReparameterize(mean: Tensor, logVariance: Tensor, noise: Tensor)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let z = reparameterize(mean: mean, logVariance: logVariance, noise: noise)
    return (z, { dz in
        if dz.isSymbolicZero { return (.zero, .zero) }
        // ∂z/∂μ = 1; ∂z/∂logσ² = ε·σ/2 = (z − μ)/2
        let dlv = Tensor(shape: z.shape) { out in
            dz.scalars.withUnsafeBufferPointer { g in
                z.scalars.withUnsafeBufferPointer { zz in
                    mean.scalars.withUnsafeBufferPointer { mu in
                        for i in 0..<out.count { out[i] = 0.5 * g[i] * (zz[i] - mu[i]) }
                    }
                }
            }
        }
        return (dz, dlv)
    })
}

// MARK: - Bernoulli likelihood: binary cross-entropy from logits

/// −log p(x | logits) for Bernoulli pixels, summed over all elements:
/// Σ max(l, 0) − l·x + log(1 + e^−|l|). `targets` in [0, 1], same shape.
@differentiable(reverse, wrt: logits)
public func bceWithLogits(logits: Tensor, targets: Tensor) -> Float {
    BCEKernel.lossAndGradient(logits: logits, targets: targets, gradient: false).loss
}

/// The forward pass also writes ∂loss/∂logits = sigmoid(l) − x, in the same
/// sweep over the logits, so the pullback only scales it.
@derivative(of: bceWithLogits, wrt: logits)
@usableFromInline
func _vjpBCEWithLogits(logits: Tensor, targets: Tensor)
    -> (value: Float, pullback: (Float) -> Tensor)
{
    let (loss, gradient) = BCEKernel.lossAndGradient(logits: logits, targets: targets, gradient: true)
    return (loss, { g in g == 1 ? gradient : gradient.scaled(by: g) })
}

@usableFromInline
enum BCEKernel {
    /// One element's loss max(l, 0) − l·x + log(1 + e^−|l|), given t = e^−|l|.
    @inline(__always)
    static func term(_ l: Float, _ x: Float, _ t: Float) -> Float {
        Swift.max(l, 0) - l * x + fastLog1p(t)
    }

    /// Each element's loss (and, if asked, ∂/∂l = σ(l) − x).
    static func terms(logits: Tensor, targets: Tensor, gradient wantGradient: Bool) -> (terms: [Float], gradient: Tensor) {
        precondition(logits.shape == targets.shape,
                     "bceWithLogits: logits \(logits.shape) vs targets \(targets.shape)")
        let n = logits.count
        var terms = [Float](unsafeUninitializedCapacity: n) { _, c in c = n }
        var gradient = wantGradient ? Tensor(shape: logits.shape) { _ in } : .zero
        logits.scalars.withUnsafeBufferPointer { l in
            targets.scalars.withUnsafeBufferPointer { x in
                terms.withUnsafeMutableBufferPointer { loss in
                    if wantGradient {
                        gradient.scalars.withUnsafeMutableBufferPointer { g in
                            for i in 0..<n {
                                let t = fastExp(-Swift.abs(l[i]))
                                loss[i] = term(l[i], x[i], t)
                                g[i] = (l[i] >= 0 ? 1 / (1 + t) : t / (1 + t)) - x[i]
                            }
                        }
                    } else {
                        for i in 0..<n { loss[i] = term(l[i], x[i], fastExp(-Swift.abs(l[i]))) }
                    }
                }
            }
        }
        return (terms, gradient)
    }

    @usableFromInline
    static func lossAndGradient(logits: Tensor, targets: Tensor, gradient wantGradient: Bool)
        -> (loss: Float, gradient: Tensor)
    {
        let (terms, gradient) = terms(logits: logits, targets: targets, gradient: wantGradient)
        return (terms.vectorSum(), gradient)
    }
}

// MARK: - per-sample reductions (evaluation; not differentiable)

/// Binary cross-entropy from logits summed over each row: (B, D) → B values.
public func bceWithLogitsPerRow(logits: Tensor, targets: Tensor) -> [Float] {
    precondition(logits.shape == targets.shape && logits.rank >= 1,
                 "bceWithLogitsPerRow: logits \(logits.shape) vs targets \(targets.shape)")
    let rows = logits.shape[0]
    let d = rows == 0 ? 0 : logits.count / rows
    let terms = BCEKernel.terms(logits: logits, targets: targets, gradient: false).terms
    return terms.withUnsafeBufferPointer { b in
        (0..<rows).map { r in vectorSum(b.baseAddress! + r * d, count: d) }
    }
}

/// Sums of each row of a (B, …) tensor, in Double.
public func rowSums(_ x: Tensor) -> [Double] {
    let rows = x.shape.first ?? 0
    let d = rows == 0 ? 0 : x.count / rows
    return x.scalars.withUnsafeBufferPointer { b in
        (0..<rows).map { r in
            var s = 0.0
            for j in 0..<d { s += Double(b[r * d + j]) }
            return s
        }
    }
}

// MARK: - Gaussian likelihoods

/// ½ log 2π.
public let halfLogTwoPi: Float = 0.918_938_533

/// −log N(x; μ, σ²) with a fixed σ (given as log σ²), summed over all
/// elements: ½ Σ [(x − μ)²/σ² + log σ² + log 2π] — a true negative
/// log-likelihood, constant included.
@differentiable(reverse, wrt: mean)
public func gaussianNLL(mean: Tensor, targets: Tensor, logVariance: Float) -> Float {
    precondition(mean.shape == targets.shape, "gaussianNLL: mean \(mean.shape) vs targets \(targets.shape)")
    let inverseVariance = fastExp(-logVariance)
    let constant = 0.5 * logVariance + halfLogTwoPi
    return mean.zipMap(targets) { m, x in 0.5 * (x - m) * (x - m) * inverseVariance + constant }.scalars.vectorSum()
}

@derivative(of: gaussianNLL, wrt: mean)
@usableFromInline
func _vjpGaussianNLL(mean: Tensor, targets: Tensor, logVariance: Float)
    -> (value: Float, pullback: (Float) -> Tensor)
{
    let inverseVariance = fastExp(-logVariance)
    return (gaussianNLL(mean: mean, targets: targets, logVariance: logVariance), { g in
        mean.zipMap(targets) { m, x in g * (m - x) * inverseVariance }  // ∂/∂μ = (μ − x)/σ²
    })
}

/// The range log σ² is clamped to in `gaussianNLL(mean:logVariance:targets:)`:
/// σ from e^−4.5 ≈ 0.011 to e^4.5 ≈ 90. Outside it the likelihood of data in
/// [0, 1] can grow without bound (σ → 0 on constant pixels) or vanish; the
/// clamp's gradient is zero outside, as for `torch.clamp`.
public let learnedLogVarianceRange: ClosedRange<Float> = -9 ... 9

/// −log N(x; μ, exp(v)) with a per-element log variance v (clamped to
/// `learnedLogVarianceRange`), summed: ½ Σ [(x − μ)² e^−v + v + log 2π].
@differentiable(reverse, wrt: (mean, logVariance))
public func gaussianNLL(mean: Tensor, logVariance: Tensor, targets: Tensor) -> Float {
    GaussianKernel.forward(mean: mean, logVariance: logVariance, targets: targets)
}

@derivative(of: gaussianNLL(mean:logVariance:targets:), wrt: (mean, logVariance))
@usableFromInline
func _vjpGaussianNLLLearned(mean: Tensor, logVariance: Tensor, targets: Tensor)
    -> (value: Float, pullback: (Float) -> (Tensor, Tensor))
{
    let value = GaussianKernel.forward(mean: mean, logVariance: logVariance, targets: targets)
    return (value, { g in
        let range = learnedLogVarianceRange
        var dMean = Tensor(shape: mean.shape) { _ in }
        var dLogVariance = Tensor(shape: mean.shape) { _ in }
        mean.scalars.withUnsafeBufferPointer { m in
            logVariance.scalars.withUnsafeBufferPointer { v in
                targets.scalars.withUnsafeBufferPointer { x in
                    dMean.scalars.withUnsafeMutableBufferPointer { dm in
                        dLogVariance.scalars.withUnsafeMutableBufferPointer { dv in
                            for i in 0..<dm.count {
                                let inside = v[i] >= range.lowerBound && v[i] <= range.upperBound
                                let lv = Swift.min(Swift.max(v[i], range.lowerBound), range.upperBound)
                                let r = x[i] - m[i]
                                let w = fastExp(-lv)
                                dm[i] = -g * r * w                                   // ∂/∂μ = (μ − x) e^−v
                                dv[i] = inside ? g * 0.5 * (1 - r * r * w) : 0       // ∂/∂v = ½ (1 − (x − μ)² e^−v)
                            }
                        }
                    }
                }
            }
        }
        return (dMean, dLogVariance)
    })
}

@usableFromInline
enum GaussianKernel {
    @usableFromInline
    static func forward(mean: Tensor, logVariance: Tensor, targets: Tensor) -> Float {
        precondition(mean.shape == targets.shape && logVariance.shape == targets.shape,
                     "gaussianNLL: mean \(mean.shape), logVariance \(logVariance.shape), targets \(targets.shape)")
        let range = learnedLogVarianceRange
        return Tensor(shape: mean.shape) { out in
            mean.scalars.withUnsafeBufferPointer { m in
                logVariance.scalars.withUnsafeBufferPointer { v in
                    targets.scalars.withUnsafeBufferPointer { x in
                        for i in 0..<out.count {
                            let lv = Swift.min(Swift.max(v[i], range.lowerBound), range.upperBound)
                            let r = x[i] - m[i]
                            out[i] = 0.5 * (r * r * fastExp(-lv) + lv) + halfLogTwoPi
                        }
                    }
                }
            }
        }.scalars.vectorSum()
    }
}

// MARK: - KL divergence to the standard normal prior

/// KL(N(μ, σ²) ‖ N(0, 1)) = −½ Σ (1 + logσ² − μ² − σ²), summed over the batch, per latent dimension:
/// (B, Z) → (Z). Used for the KL controls (β schedules, free bits) and to
/// report which dimensions carry information.
@differentiable(reverse)
public func gaussianKLPerDimension(mean: Tensor, logVariance: Tensor) -> Tensor {
    precondition(mean.rank == 2 && mean.shape == logVariance.shape,
                 "gaussianKLPerDimension: mean \(mean.shape) vs logVariance \(logVariance.shape)")
    let (b, z) = (mean.shape[0], mean.shape[1])
    let terms = mean.zipMap(logVariance) { mu, lv in -0.5 * (1 + lv - mu * mu - fastExp(lv)) }
    return Tensor(shape: [z]) { out in
        out.initialize(repeating: 0)
        terms.scalars.withUnsafeBufferPointer { t in
            for row in 0..<b { for j in 0..<z { out[j] += t[row * z + j] } }
        }
    }
}

@derivative(of: gaussianKLPerDimension)
@usableFromInline
func _vjpGaussianKLPerDimension(mean: Tensor, logVariance: Tensor)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let z = mean.shape[1]
    return (gaussianKLPerDimension(mean: mean, logVariance: logVariance), { g in
        if g.isSymbolicZero { return (.zero, .zero) }
        let dMean = Tensor(shape: mean.shape) { out in
            mean.scalars.withUnsafeBufferPointer { mu in
                for i in 0..<out.count { out[i] = g.scalars[i % z] * mu[i] }                        // ∂/∂μ = μ
            }
        }
        let dLogVariance = Tensor(shape: mean.shape) { out in
            logVariance.scalars.withUnsafeBufferPointer { lv in
                for i in 0..<out.count { out[i] = g.scalars[i % z] * 0.5 * (fastExp(lv[i]) - 1) }  // ∂/∂logσ² = (σ² − 1)/2
            }
        }
        return (dMean, dLogVariance)
    })
}
