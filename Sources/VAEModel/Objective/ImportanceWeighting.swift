import Foundation
import TensorCore

/// The importance-weighted estimate of log p(x) (Burda, Grosse &
/// Salakhutdinov 2016) with K samples from q(z | x):
/// log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x), computed with logsumexp in
/// Double. Legend: K samples, B batch, Z latent.
public struct ImportanceWeightedEstimate: Equatable {
    /// log w_k for each sample k and image b: K arrays of B values.
    public var logWeights: [[Double]]
    /// The estimate of log p(x), one value per image (B).
    public var logLikelihood: [Double]
}

/// `noise` holds K tensors of standard normals, each (B, Z). The posterior
/// and the prior are the model family's (`LatentPosterior`), the
/// reconstruction term the likelihood's: nothing is re-derived here.
public func importanceWeightedLogLikelihood<Model: VariationalAutoencoder>(
    _ model: Model, batch: DataBatch, noise: [Tensor], likelihood: Likelihood, on backend: Backend
) -> ImportanceWeightedEstimate {
    precondition(!noise.isEmpty, "importance weighting needs at least one sample")
    let q = model.encode(batch.input, mask: batch.mask, condition: batch.condition, on: backend)
    let b = batch.count
    var logWeights: [[Double]] = []
    for eps in noise {
        let zk = q.sample(noise: eps)
        let nll = likelihood.negativeLogLikelihoodPerSample(batch.target, given: model.decode(zk, condition: batch.condition,
                                                                                              on: backend),
                                                            mask: batch.mask)
        let logPz = Model.Posterior.logPrior(zk), logQz = q.logDensity(of: zk, noise: eps)
        logWeights.append((0..<b).map { i in -nll[i] + logPz[i] - logQz[i] })
    }
    let k = Double(noise.count)
    let estimate = (0..<b).map { i -> Double in
        let m = logWeights.map { $0[i] }.max()!
        let s = logWeights.reduce(0.0) { $0 + Foundation.exp($1[i] - m) }
        return m + Foundation.log(s) - Foundation.log(k)
    }
    return ImportanceWeightedEstimate(logWeights: logWeights, logLikelihood: estimate)
}

/// `importanceWeightedLogLikelihood(_:batch:…)` for x that is both the input and the target.
public func importanceWeightedLogLikelihood<Model: VariationalAutoencoder>(
    _ model: Model, x: Tensor, condition: Tensor = Tensor(zeros: [0, 0]), noise: [Tensor], likelihood: Likelihood,
    on backend: Backend
) -> ImportanceWeightedEstimate {
    importanceWeightedLogLikelihood(model, batch: DataBatch(input: x, condition: condition.shape[0] == x.shape[0] ? condition : nil),
                                    noise: noise, likelihood: likelihood, on: backend)
}
