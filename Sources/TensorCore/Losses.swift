import _Differentiation

// The latent space's primitives (reparameterisation, the Gaussian KL), each
// forward op followed by its VJP. The likelihoods live in VAEModel/Likelihoods.
// Legend: B batch, Z latent.

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

// MARK: - missing values

/// x where observed, `fill` where missing: x + (1 − m)·fill, with x 0 where
/// missing (the batch's convention), the mask m (B, D) 1 where observed, and
/// one fill value per dimension (D) shared by the rows (MIWAE's learned
/// constants). Differentiable with respect to the fill only (x is data).
@differentiable(reverse, wrt: fill)
public func fillingMissing(_ x: Tensor, mask: Tensor, fill: Tensor) -> Tensor {
    precondition(x.shape == mask.shape && x.rank == 2 && fill.count == x.shape[1],
                 "fillingMissing: x \(x.shape), mask \(mask.shape), fill \(fill.shape)")
    let d = x.shape[1]
    return Tensor(shape: x.shape) { out in
        for i in 0..<out.count { out[i] = x.scalars[i] + (1 - mask.scalars[i]) * fill.scalars[i % d] }
    }
}

@derivative(of: fillingMissing, wrt: fill)
@usableFromInline
func _vjpFillingMissing(_ x: Tensor, mask: Tensor, fill: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let (b, d) = (x.shape[0], x.shape[1])
    return (fillingMissing(x, mask: mask, fill: fill), { g in
        if g.isSymbolicZero { return .zero }
        // ∂/∂fill_j = Σ_b (1 − m_bj) g_bj
        return Tensor(shape: [d]) { out in
            out.initialize(repeating: 0)
            for r in 0..<b { for j in 0..<d { out[j] += (1 - mask.scalars[r * d + j]) * g.scalars[r * d + j] } }
        }
    })
}
