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

// MARK: - KL divergence to the standard normal prior

/// KL(N(μ, σ²) ‖ N(0, 1)) summed over all elements:
/// −½ Σ (1 + logσ² − μ² − σ²). Inputs (B, Z).
@differentiable(reverse)
public func gaussianKL(mean: Tensor, logVariance: Tensor) -> Float {
    precondition(mean.shape == logVariance.shape,
                 "gaussianKL: mean \(mean.shape) vs logVariance \(logVariance.shape)")
    return mean.zipMap(logVariance) { mu, lv in -0.5 * (1 + lv - mu * mu - fastExp(lv)) }
        .scalars.vectorSum()
}

@derivative(of: gaussianKL)
@usableFromInline
func _vjpGaussianKL(mean: Tensor, logVariance: Tensor)
    -> (value: Float, pullback: (Float) -> (Tensor, Tensor))
{
    (gaussianKL(mean: mean, logVariance: logVariance), { g in
        (mean.scaled(by: g),                                          // ∂/∂μ = μ
         logVariance.map { lv in 0.5 * g * (fastExp(lv) - 1) })      // ∂/∂logσ² = (σ² − 1)/2
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
    @usableFromInline
    static func lossAndGradient(logits: Tensor, targets: Tensor, gradient wantGradient: Bool)
        -> (loss: Float, gradient: Tensor)
    {
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
                                loss[i] = Swift.max(l[i], 0) - l[i] * x[i] + fastLog1p(t)
                                let s = l[i] >= 0 ? 1 / (1 + t) : t / (1 + t)
                                g[i] = s - x[i]
                            }
                        }
                    } else {
                        for i in 0..<n {
                            let t = fastExp(-Swift.abs(l[i]))
                            loss[i] = Swift.max(l[i], 0) - l[i] * x[i] + fastLog1p(t)
                        }
                    }
                }
            }
        }
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
    var terms = [Float](repeating: 0, count: logits.count)
    logits.scalars.withUnsafeBufferPointer { l in
        targets.scalars.withUnsafeBufferPointer { x in
            terms.withUnsafeMutableBufferPointer { out in
                for i in 0..<out.count {
                    let t = fastExp(-Swift.abs(l[i]))
                    out[i] = Swift.max(l[i], 0) - l[i] * x[i] + fastLog1p(t)
                }
            }
        }
    }
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
