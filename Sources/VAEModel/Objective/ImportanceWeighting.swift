import Foundation
import TensorCore

/// The importance-weighted estimate of log p(x) (Burda, Grosse &
/// Salakhutdinov 2016) with K samples from q(z | x):
/// log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x), z_k = μ + ε_k·σ,
/// computed with logsumexp in Double. Legend: K samples, B batch, Z latent.
public struct ImportanceWeightedEstimate: Equatable {
    /// log w_k for each sample k and image b: K arrays of B values.
    public var logWeights: [[Double]]
    /// The estimate of log p(x), one value per image (B).
    public var logLikelihood: [Double]
}

/// `noise` holds K tensors of standard normals, each (B, Z).
public func importanceWeightedLogLikelihood<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, condition: Tensor = Tensor(zeros: [0, 0]), noise: [Tensor], likelihood: Likelihood,
    on backend: Backend
) -> ImportanceWeightedEstimate {
    precondition(!noise.isEmpty, "importance weighting needs at least one sample")
    let q = model.encode(x, condition: condition, on: backend)
    let b = x.shape[0]
    let z = q.mean.count / max(b, 1)
    let halfLog2Pi = 0.5 * 1.837_877_066_409_345_5  // ½ log 2π
    var logWeights: [[Double]] = []
    for eps in noise {
        let zk = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps)
        let logPxz = likelihood.logLikelihoodPerSample(x, given: model.decode(zk, condition: condition, on: backend))
        var w = [Double](repeating: 0, count: b)
        for i in 0..<b {
            var logPz = 0.0, logQz = 0.0
            for j in 0..<z {
                let index = i * z + j
                let zv = Double(zk.scalars[index]), e = Double(eps.scalars[index])
                logPz += -0.5 * zv * zv - halfLog2Pi
                // log N(z; μ, σ²) with z = μ + εσ: −½ε² − ½log2π − ½logσ²
                logQz += -0.5 * e * e - halfLog2Pi - 0.5 * Double(q.logVariance.scalars[index])
            }
            w[i] = logPxz[i] + logPz - logQz
        }
        logWeights.append(w)
    }
    let k = Double(noise.count)
    let estimate = (0..<b).map { i -> Double in
        let m = logWeights.map { $0[i] }.max()!
        let s = logWeights.reduce(0.0) { $0 + Foundation.exp($1[i] - m) }
        return m + Foundation.log(s) - Foundation.log(k)
    }
    return ImportanceWeightedEstimate(logWeights: logWeights, logLikelihood: estimate)
}
