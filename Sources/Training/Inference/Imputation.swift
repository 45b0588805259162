import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// How missing values are filled in from a trained model, with x_obs the
/// observed values of a sample and x_miss the missing ones:
/// - `importance`: the self-normalised importance-sampling estimate of
///   E[x_miss | x_obs] with L draws z_l ~ q(z | x_obs) and weights
///   w_l ∝ p(x_obs | z_l) p(z_l) / q(z_l | x_obs) (MIWAE, Mattei & Frellsen
///   2019); multiple imputations by sampling-importance-resampling.
/// - `mwg`: Metropolis-within-Gibbs (Mattei & Frellsen 2018), which targets
///   p(x_miss | x_obs) exactly: z is proposed from q(z | x̂) and accepted
///   with the independence-sampler ratio, then x_miss ~ p(x_miss | z).
/// - `pseudoGibbs`: the same chain accepting every proposal (Rezende et al.
///   2014), which does not target p(x_miss | x_obs) in general.
public enum ImputationMethod: String, CaseIterable, Sendable {
    case importance
    case mwg
    case pseudoGibbs = "pseudo-gibbs"
}

public struct ImputationSettings: Sendable {
    public var method = ImputationMethod.importance
    /// L, the importance draws per sample.
    public var samples = 1000
    /// T, the iterations of each chain (mwg, pseudo-gibbs), and the first
    /// ones left out of the single imputation's average (default T/2).
    public var iterations = 200
    public var burnIn: Int?
    /// M, the imputations drawn per sample besides the single one (0: none).
    public var multiple = 0
    public var seed: UInt64 = 1

    public init() {}

    /// The chains of a sample: one per imputation, at least one.
    public var chains: Int { max(multiple, 1) }
    public var discarded: Int { burnIn ?? iterations / 2 }
}

/// One sample's imputations, in the encoder's scale (standardized values,
/// levels scaled), observed values as the encoder read them: the single
/// imputation (D), M draws (M·D), and for a chain the proposals accepted.
public struct SampleImputation: Sendable {
    public var single: [Float]
    public var draws: [Float]
    public var accepted: Int
    public var proposed: Int
}

/// log of the Metropolis-within-Gibbs acceptance ratio (Mattei & Frellsen
/// 2018, algorithm 1) for moving from z to the proposal z̃ ~ q(z | x̂), with
/// x̂ = (x_obs, x̂_miss) the current completed sample:
///     ρ = [p(x̂ | z̃) p(z̃) q(z | x̂)] / [p(x̂ | z) p(z) q(z̃ | x̂)].
/// The q terms are those of an independence sampler with proposal q(· | x̂):
/// leaving them out (as pseudo-Gibbs effectively does) changes the target.
public func mwgLogAcceptance(logLikelihoodProposal: Double, logPriorProposal: Double, logQProposal: Double,
                             logLikelihoodCurrent: Double, logPriorCurrent: Double, logQCurrent: Double) -> Double {
    (logLikelihoodProposal + logPriorProposal - logQProposal) - (logLikelihoodCurrent + logPriorCurrent - logQCurrent)
}

/// Imputes one sample at a time: a sample's result depends on the model, the
/// settings and its global index only (its random streams are
/// (seed, .imputation, index, purpose)), so any split of the samples over
/// ranks gives the same bytes.
public struct Imputer {
    public let model: LoadedModel
    public let settings: ImputationSettings
    /// Importance draws per decoder batch (memory; results do not depend on it... but it is fixed).
    static let drawsPerBatch = 1024

    public init(model: LoadedModel, settings: ImputationSettings) {
        self.model = model
        self.settings = settings
    }

    func stream(_ index: Int, _ purpose: Int) -> RandomStream {
        RandomStream(seed: settings.seed, domain: .imputation, UInt32(truncatingIfNeeded: index),
                     UInt32(truncatingIfNeeded: purpose))
    }

    /// Imputes sample `index`: x (1, D) in the encoder's scale with 0 where
    /// missing, its mask (1, D) (nil: nothing is missing), its condition.
    public func impute(_ x: Tensor, mask: Tensor?, condition: Tensor, index: Int) -> SampleImputation {
        let d = x.count, m = settings.multiple
        guard let mask, mask.scalars.contains(0) else {
            return SampleImputation(single: x.scalars, draws: (0..<m).flatMap { _ in x.scalars }, accepted: 0, proposed: 0)
        }
        precondition(x.shape == [1, d] && mask.shape == [1, d], "impute one sample at a time")
        switch settings.method {
        case .importance: return importance(x, mask: mask, condition: condition, index: index)
        case .mwg, .pseudoGibbs: return chains(x, mask: mask, condition: condition, index: index)
        }
    }

    /// Values in the encoder's scale as the likelihood scores them: integer
    /// levels for a discrete likelihood, the values themselves otherwise.
    func targets(_ input: Tensor) -> Tensor {
        guard model.likelihood.targets == .levels, let k = model.likelihood.levels else { return input }
        let top = Float(k - 1)
        return input.map { ($0 * top).rounded() }
    }

    /// x where observed, `fill` elsewhere (rows of `fill` matching the rows of x repeated).
    static func completed(_ x: [Float], mask: [Float], fill: Tensor) -> Tensor {
        let d = x.count
        return Tensor(shape: fill.shape) { out in
            for r in 0..<fill.shape[0] {
                for j in 0..<d { out[r * d + j] = mask[j] != 0 ? x[j] : fill.scalars[r * d + j] }
            }
        }
    }

    // MARK: - Importance sampling

    func importance(_ x: Tensor, mask: Tensor, condition: Tensor, index: Int) -> SampleImputation {
        let (d, z, l) = (x.count, model.latentSize, settings.samples)
        let q = model.posterior(x, mask: mask, condition: condition)
        let target = targets(x)
        let noise = stream(index, 0)
        var logWeights = [Double](repeating: 0, count: l)
        var outputs: [DecoderOutput] = []   // per batch of draws, (n rows)
        var start = 0
        while start < l {
            let n = min(Self.drawsPerBatch, l - start)
            let eps = Tensor(normalsFrom: noise, shape: [n, z], offset: start * z)
            let qn = q.repeatingRows(n)
            let zs = qn.sample(noise: eps)
            let output = model.decode(zs, condition: condition.repeatingRows(n))
            let nll = model.likelihood.negativeLogLikelihoodPerSample(target.repeatingRows(n), given: output,
                                                                       mask: mask.repeatingRows(n))
            let logPrior = model.logPrior(zs), logQ = qn.logDensity(of: zs, noise: eps)
            for i in 0..<n { logWeights[start + i] = -nll[i] + logPrior[i] - logQ[i] }
            outputs.append(output)
            start += n
        }
        let top = logWeights.max()!
        var weights = logWeights.map { Foundation.exp($0 - top) }
        let total = weights.reduce(0, +)
        for i in weights.indices { weights[i] /= total }
        // E[x | z_l] only for the draws that carry weight: those below 10⁻¹² of the largest add at most L·10⁻¹²
        // of a value's range (and a likelihood's mean can cost a sum over its levels).
        let floor = weights.max()! * 1e-12
        let missing = (0..<d).filter { mask.scalars[$0] == 0 }
        var estimate = [Double](repeating: 0, count: d)
        for (b, output) in outputs.enumerated() {
            let rows = (0..<output.location.shape[0]).filter { weights[b * Self.drawsPerBatch + $0] >= floor }
            guard !rows.isEmpty else { continue }
            // Means of the missing values only.
            let mean = model.likelihood.mean(Self.selecting(rows, columns: missing, of: output)).scalars
            for (k, i) in rows.enumerated() {
                let w = weights[b * Self.drawsPerBatch + i]
                for (c, j) in missing.enumerated() { estimate[j] += w * Double(mean[k * missing.count + c]) }
            }
        }
        let single = (0..<d).map { mask.scalars[$0] != 0 ? x.scalars[$0] : Float(estimate[$0]) }
        // Sampling-importance-resampling: M draws z_l with probabilities w̃_l, then x_miss ~ p(x_miss | z_l).
        var draws: [Float] = []
        if settings.multiple > 0 {
            let m = settings.multiple
            let uniforms = stream(index, 1).uniforms(count: m)
            var cumulative = [Double](repeating: 0, count: l)
            var running = 0.0
            for i in 0..<l { running += weights[i]; cumulative[i] = running }
            let picked = uniforms.map { u -> Int in
                let target = Double(u) * running
                var lo = 0, hi = l - 1
                while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < target { lo = mid + 1 } else { hi = mid } }
                return lo
            }
            let eps = Tensor(shape: [m, z], scalars: picked.flatMap { noise.normals(count: z, offset: $0 * z) })
            let zs = q.repeatingRows(m).sample(noise: eps)
            let output = model.decode(zs, condition: condition.repeatingRows(m))
            let sampled = model.likelihood.sample(output, uniforms: ElementUniforms(stream: stream(index, 2)))
            draws = Self.completed(x.scalars, mask: mask.scalars, fill: sampled).scalars
        }
        return SampleImputation(single: single, draws: draws, accepted: 0, proposed: 0)
    }

    // MARK: - Chains

    /// C chains (one per imputation) of Metropolis-within-Gibbs or
    /// pseudo-Gibbs. Start: z_0 ~ q(z | x_obs) (the encoder's fill where
    /// missing), x̂_miss ~ p(x_miss | z_0). Iteration t: z̃ ~ q(z | x̂); z_t = z̃
    /// if accepted (always, for pseudo-Gibbs), else z_(t−1); x̂_miss ~
    /// p(x_miss | z_t). The single imputation averages E[x_miss | z_t] over
    /// the chains and the iterations after the burn-in; the M imputations
    /// are the chains' last states.
    func chains(_ x: Tensor, mask: Tensor, condition: Tensor, index: Int) -> SampleImputation {
        let (d, z, c, t) = (x.count, model.latentSize, settings.chains, settings.iterations)
        let likelihood = model.likelihood
        let conditions = condition.repeatingRows(c)
        let exact = settings.method == .mwg
        // Start.
        var current = model.posterior(x, mask: mask, condition: condition).repeatingRows(c)
            .sample(noise: Tensor(normalsFrom: stream(index, 0), shape: [c, z]))
        var output = model.decode(current, condition: conditions)
        var completed = Self.completed(x.scalars, mask: mask.scalars,
                                       fill: likelihood.sample(output, uniforms: ElementUniforms(stream: stream(index, 1))))
        var sum = [Double](repeating: 0, count: d)
        var kept = 0, accepted = 0, proposed = 0
        for step in 1...max(t, 1) where t > 0 {
            let q = model.posterior(completed, mask: nil, condition: conditions)
            let eps = Tensor(normalsFrom: stream(index, 3 * step), shape: [c, z])
            let proposal = q.sample(noise: eps)
            let proposalOutput = model.decode(proposal, condition: conditions)
            var accept = [Bool](repeating: true, count: c)
            if exact {
                let target = targets(completed)
                let logLikelihoodProposal = likelihood.negativeLogLikelihoodPerSample(target, given: proposalOutput).map { -$0 }
                let logLikelihoodCurrent = likelihood.negativeLogLikelihoodPerSample(target, given: output).map { -$0 }
                let (logPriorProposal, logPriorCurrent) = (model.logPrior(proposal), model.logPrior(current))
                let (logQProposal, logQCurrent) = (q.logDensity(of: proposal, noise: eps), q.logDensity(of: current))
                let uniforms = stream(index, 3 * step + 1).uniforms(count: c)
                for k in 0..<c {
                    let logRatio = mwgLogAcceptance(
                        logLikelihoodProposal: logLikelihoodProposal[k], logPriorProposal: logPriorProposal[k],
                        logQProposal: logQProposal[k], logLikelihoodCurrent: logLikelihoodCurrent[k],
                        logPriorCurrent: logPriorCurrent[k], logQCurrent: logQCurrent[k])
                    accept[k] = Foundation.log(Double(uniforms[k])) < logRatio
                }
            }
            proposed += c
            accepted += accept.filter { $0 }.count
            if accept.allSatisfy({ $0 }) {
                (current, output) = (proposal, proposalOutput)
            } else if accept.contains(true) {
                current = Self.rows(current, from: proposal, where: accept)
                output = DecoderOutput(location: Self.rows(output.location, from: proposalOutput.location, where: accept),
                                       auxiliary: Self.rows(output.auxiliary, from: proposalOutput.auxiliary, where: accept))
            }
            completed = Self.completed(x.scalars, mask: mask.scalars,
                                       fill: likelihood.sample(output, uniforms: ElementUniforms(stream: stream(index, 3 * step + 2))))
            if step > settings.discarded {
                let mean = likelihood.mean(output).scalars
                for k in 0..<c { for j in 0..<d { sum[j] += Double(mean[k * d + j]) } }
                kept += c
            }
        }
        let single = (0..<d).map { j -> Float in
            mask.scalars[j] != 0 ? x.scalars[j] : Float(kept > 0 ? sum[j] / Double(kept) : 0)
        }
        let draws = settings.multiple > 0 ? completed.scalars : []
        return SampleImputation(single: single, draws: draws, accepted: accepted, proposed: proposed)
    }

    /// These rows and data columns of a decoder output, every head's
    /// (the auxiliary heads are parameter-major within a row).
    static func selecting(_ rows: [Int], columns: [Int], of output: DecoderOutput) -> DecoderOutput {
        let d = output.location.shape[0] == 0 ? 0 : output.location.count / output.location.shape[0]
        let heads = d == 0 ? 0 : output.auxiliary.count / max(output.auxiliary.shape[0], 1) / d
        let m = columns.count
        let location = Tensor(shape: [rows.count, m]) { out in
            for (k, r) in rows.enumerated() { for (c, j) in columns.enumerated() { out[k * m + c] = output.location.scalars[r * d + j] } }
        }
        let auxiliary = Tensor(shape: [rows.count, heads * m]) { out in
            for (k, r) in rows.enumerated() {
                for p in 0..<heads {
                    for (c, j) in columns.enumerated() {
                        out[(k * heads + p) * m + c] = output.auxiliary.scalars[(r * heads + p) * d + j]
                    }
                }
            }
        }
        return DecoderOutput(location: location, auxiliary: auxiliary)
    }

    /// Rows of `base` replaced by those of `other` where `take` says.
    static func rows(_ base: Tensor, from other: Tensor, where take: [Bool]) -> Tensor {
        let width = base.count / max(take.count, 1)
        return Tensor(shape: base.shape) { out in
            for r in take.indices {
                let source = take[r] ? other : base
                for j in 0..<width { out[r * width + j] = source.scalars[r * width + j] }
            }
        }
    }
}

/// Every sample of a set imputed: the single imputations (N·D) and the M
/// imputations ((M, N, D), imputation-major), in the encoder's scale, and
/// the chains' acceptance counts.
public struct ImputationResult: Sendable {
    public var single: [Float]
    public var draws: [Float]
    public var accepted: Int
    public var proposed: Int

    public var acceptanceRate: Double? { proposed > 0 ? Double(accepted) / Double(proposed) : nil }
}

extension Imputer {
    /// Imputes every sample of `images`, the ranks taking contiguous blocks
    /// of rows; every rank receives the whole result, in input order. The
    /// bytes do not depend on the number of ranks (see `Imputer`).
    public func imputeAll(_ images: ImageSet, communicator: Communicator,
                          progress: ((Int, Int) -> Void)? = nil) throws -> ImputationResult {
        let n = images.count, d = images.shape.size, m = settings.multiple
        var single = [Float](repeating: 0, count: n * d), draws = [Float](repeating: 0, count: m * n * d)
        var counts: [Double] = [0, 0]
        let block = ShardPlan.block(count: n, rank: communicator.rank, size: communicator.size)
        for i in block {
            let result = impute(images.batch(i..<(i + 1)), mask: images.mask([i]),
                                condition: model.condition(of: images, i..<(i + 1)), index: i)
            for j in 0..<d { single[i * d + j] = result.single[j] }
            for k in 0..<m { for j in 0..<d { draws[(k * n + i) * d + j] = result.draws[k * d + j] } }
            counts[0] += Double(result.accepted)
            counts[1] += Double(result.proposed)
            progress?(i - block.lowerBound + 1, block.count)
        }
        // Each value is written by one rank and zero elsewhere: the sums are exact.
        try communicator.allreduceSum(&single)
        if m > 0 { try communicator.allreduceSum(&draws) }
        try communicator.allreduceSum(&counts)
        return ImputationResult(single: single, draws: draws, accepted: Int(counts[0]), proposed: Int(counts[1]))
    }
}
