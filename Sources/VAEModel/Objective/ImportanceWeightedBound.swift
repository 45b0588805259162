import _Differentiation
import Foundation
import TensorCore

// Training with the importance-weighted bound (IWAE, Burda, Grosse &
// Salakhutdinov 2016), with missing values the MIWAE bound (Mattei &
// Frellsen 2019): with K draws z_k = μ + σ ε_k from q(z | x),
//     L_K = Σ_b log (1/K) Σ_k w_bk,   w_bk = p(x_obs | z_k) p(z_k) / q(z_k | x),
// where only the observed values enter p(x_obs | z). K = 1 is the ELBO
// (with the one-sample reconstruction term and the closed-form KL, which
// training keeps using for K = 1). Rows of the K·B draws are image-major:
// row b·K + k is draw k of image b.
// Legend: B batch, K draws, Z latent, D data dimensions.

/// z (B·K, Z): draw k of image b is μ_b + exp(½ log σ²_b) ε_(bK+k).
@differentiable(reverse, wrt: (mean, logVariance))
public func reparameterizeRepeated(mean: Tensor, logVariance: Tensor, noise: Tensor, samples k: Int) -> Tensor {
    let (b, z) = (mean.shape[0], mean.shape[1])
    precondition(mean.shape == logVariance.shape && noise.shape == [b * k, z],
                 "reparameterizeRepeated: mean \(mean.shape), logVariance \(logVariance.shape), noise \(noise.shape), K \(k)")
    return Tensor(shape: [b * k, z]) { out in
        for r in 0..<(b * k) {
            let i = r / k
            for j in 0..<z {
                out[r * z + j] = mean.scalars[i * z + j] + noise.scalars[r * z + j] * fastExp(0.5 * logVariance.scalars[i * z + j])
            }
        }
    }
}

@derivative(of: reparameterizeRepeated, wrt: (mean, logVariance))
@usableFromInline
func _vjpReparameterizeRepeated(mean: Tensor, logVariance: Tensor, noise: Tensor, samples k: Int)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let value = reparameterizeRepeated(mean: mean, logVariance: logVariance, noise: noise, samples: k)
    let (b, z) = (mean.shape[0], mean.shape[1])
    return (value, { g in
        if g.isSymbolicZero { return (.zero, .zero) }
        // ∂z/∂μ = 1; ∂z/∂log σ² = ε σ / 2; each summed over the K draws.
        var dMean = [Float](repeating: 0, count: b * z), dLogVariance = [Float](repeating: 0, count: b * z)
        for r in 0..<(b * k) {
            let i = r / k
            for j in 0..<z {
                let gr = g.scalars[r * z + j]
                dMean[i * z + j] += gr
                dLogVariance[i * z + j] += gr * 0.5 * noise.scalars[r * z + j] * fastExp(0.5 * logVariance.scalars[i * z + j])
            }
        }
        return (Tensor(shape: [b, z], scalars: dMean), Tensor(shape: [b, z], scalars: dLogVariance))
    })
}

/// The log importance weights log w (B·K rows, in Double) of draws z
/// (B·K, Z) with noise ε (B·K, Z) and log σ² (B, Z):
/// −Σ_obs NLL + log N(z; 0, I) − log N(z; μ, σ²), the last being
/// Σ_j −½ε² − ½ log σ² − ½ log 2π since z = μ + σε. Also the likelihood's
/// per-element gradient when asked.
func importanceLogWeights(_ x: Tensor, given output: DecoderOutput, samples z: Tensor, noise: Tensor, logVariance: Tensor,
                          count k: Int, likelihood: Likelihood, mask: Tensor?, gradient: Bool)
    -> (logWeights: [Double], gradient: DecoderOutput?)
{
    let b = x.shape[0], d = b == 0 ? 0 : x.count / b, width = z.shape[1]
    let (terms, g) = likelihood.elementTerms(x.repeatingRows(k), given: output, gradient: gradient,
                                             mask: mask?.repeatingRows(k))
    let halfLogTwoPi = 0.5 * Foundation.log(2 * Double.pi)
    var logWeights = [Double](repeating: 0, count: b * k)
    for r in 0..<(b * k) {
        var nll = 0.0
        for j in 0..<d { nll += Double(terms[r * d + j]) }
        var logPrior = 0.0, logQ = 0.0
        for j in 0..<width {
            let zz = Double(z.scalars[r * width + j]), e = Double(noise.scalars[r * width + j])
            logPrior += -0.5 * zz * zz - halfLogTwoPi
            logQ += -0.5 * e * e - 0.5 * Double(logVariance.scalars[(r / k) * width + j]) - halfLogTwoPi
        }
        logWeights[r] = -nll + logPrior - logQ
    }
    return (logWeights, g)
}

/// −L_K summed over the batch, in nats: the negative importance-weighted
/// bound of decoder outputs for draws z (B·K rows; see
/// `reparameterizeRepeated`), differentiable with respect to the outputs,
/// the draws (through log p(z)) and log σ² (through log q).
@differentiable(reverse, wrt: (output, z, logVariance))
public func negativeImportanceWeightedBound(_ x: Tensor, given output: DecoderOutput, samples z: Tensor, noise: Tensor,
                                            logVariance: Tensor, count k: Int, likelihood: Likelihood,
                                            mask: Tensor?) -> Float {
    let logWeights = importanceLogWeights(x, given: output, samples: z, noise: noise, logVariance: logVariance, count: k,
                                          likelihood: likelihood, mask: mask, gradient: false).logWeights
    return Float(-normalizedWeights(logWeights, count: k).logMeans.reduce(0, +))
}

/// Per image, log (1/K) Σ_k w_k, and the self-normalised weights
/// w_k / Σ_k' w_k' (B·K), in Double.
func normalizedWeights(_ logWeights: [Double], count k: Int) -> (logMeans: [Double], weights: [Double]) {
    let b = logWeights.count / k
    var weights = [Double](repeating: 0, count: logWeights.count)
    let logMeans = (0..<b).map { i -> Double in
        let row = logWeights[i * k ..< (i + 1) * k]
        let m = row.max()!
        var s = 0.0
        for r in row.indices { weights[r] = Foundation.exp(logWeights[r] - m); s += weights[r] }
        for r in row.indices { weights[r] /= s }
        return m + Foundation.log(s) - Foundation.log(Double(k))
    }
    return (logMeans, weights)
}

@derivative(of: negativeImportanceWeightedBound, wrt: (output, z, logVariance))
@usableFromInline
func _vjpNegativeImportanceWeightedBound(_ x: Tensor, given output: DecoderOutput, samples z: Tensor, noise: Tensor,
                                         logVariance: Tensor, count k: Int, likelihood: Likelihood, mask: Tensor?)
    -> (value: Float, pullback: (Float) -> (DecoderOutput.TangentVector, Tensor, Tensor))
{
    let (logWeights, g) = importanceLogWeights(x, given: output, samples: z, noise: noise, logVariance: logVariance,
                                               count: k, likelihood: likelihood, mask: mask, gradient: true)
    let (logMeans, weights) = normalizedWeights(logWeights, count: k)
    let rows = logWeights.count
    return (Float(-logMeans.reduce(0, +)), { seed in
        // d(−L)/d log w_bk = −w̃_bk; log w = −NLL + log p(z) − log q:
        // outputs: w̃ ∂NLL; z: w̃ z (from −½ z²); log σ²: −½ Σ_k w̃_bk = −½.
        func scaledRows(_ t: Tensor) -> Tensor {
            guard t.count > 0 else { return t }
            let width = t.count / rows
            return Tensor(shape: t.shape) { out in
                for r in 0..<rows {
                    let w = seed * Float(weights[r])
                    for j in 0..<width { out[r * width + j] = w * t.scalars[r * width + j] }
                }
            }
        }
        let dOutput = DecoderOutput.TangentVector(location: scaledRows(g!.location),
                                                  auxiliary: g!.auxiliary.isSymbolicZero ? g!.auxiliary : scaledRows(g!.auxiliary))
        let dz = scaledRows(z)
        let dLogVariance = Tensor(repeating: -0.5 * seed, shape: logVariance.shape)
        return (dOutput, dz, dLogVariance)
    })
}

/// The training terms of the importance-weighted bound with K draws per
/// image (`noise` (B, K·Z): image b's K draws side by side): the KL is
/// q's closed-form KL as the ELBO reports it, and the "reconstruction"
/// is −L_K − KL, so that reconstruction + KL (the loss with β = 1, which
/// this objective requires) is −L_K and the trainer, its reports and its
/// reductions stay those of the ELBO.
@differentiable(reverse, wrt: model)
public func negativeImportanceWeightedTerms<Model: VariationalAutoencoder>(
    _ model: Model, batch: DataBatch, noise: Tensor, samples k: Int, likelihood: Likelihood, on backend: Backend
) -> ELBOTerms where Model.Posterior == GaussianPosterior {
    let q = model.encode(batch.input, mask: batch.mask, condition: batch.condition, on: backend)
    let latent = withoutDerivative(at: model.latentSize)
    let eps = withoutDerivative(at: noise).reshaped([withoutDerivative(at: batch.count) * k, latent])
    let z = reparameterizeRepeated(mean: q.mean, logVariance: q.logVariance, noise: eps, samples: k)
    let output = model.decode(z, condition: withoutDerivative(at: batch.condition.repeatingRows(k)), on: backend)
    let bound = negativeImportanceWeightedBound(batch.target, given: output, samples: z, noise: eps,
                                                logVariance: q.logVariance, count: k, likelihood: likelihood,
                                                mask: batch.mask)
    let kl = q.klPerDimension()
    return ELBOTerms(reconstruction: bound - sum(kl), klPerDimension: kl)
}

extension VariationalAutoencoder where Posterior == GaussianPosterior {
    @differentiable(reverse, wrt: self)
    public func importanceWeightedTerms(batch: DataBatch, noise: Tensor, samples k: Int, likelihood: Likelihood,
                                        on backend: Backend) -> ELBOTerms {
        negativeImportanceWeightedTerms(self, batch: batch, noise: noise, samples: k, likelihood: likelihood, on: backend)
    }
}
