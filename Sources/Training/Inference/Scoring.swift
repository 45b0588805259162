import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// Per-sample scores of a trained model: how unusual each image is to it.
public struct SampleScores: Sendable {
    /// −ELBO = reconstruction NLL + KL, nats.
    public var negativeELBO: [Double]
    public var reconstruction: [Double]
    public var kl: [Double]
    /// The importance-weighted estimate of −log p(x) with K samples (K > 1).
    public var negativeLogLikelihood: [Double]?
    public var importanceSamples: Int

    public var count: Int { negativeELBO.count }

    /// (name, values) of each score, in the order of the CSV columns.
    public var columns: [(name: String, values: [Double])] {
        var out = [("neg_elbo", negativeELBO), ("reconstruction_nll", reconstruction), ("kl", kl)]
        if let negativeLogLikelihood { out.append(("neg_log_px", negativeLogLikelihood)) }
        return out
    }
}

extension Inference {
    /// Every image's scores, in input order, on every rank: each rank scores
    /// its contiguous block and a sum of disjoint blocks assembles them
    /// (nothing padded). The noise is `evaluate`'s: image i's ELBO uses block
    /// i of (seed, .evaluationNoise), its importance sample k block i·K + k
    /// of (seed, .evaluationNoise, 1); so the mean −ELBO is `evaluate`'s loss
    /// and the mean −log p(x) its importance-weighted estimate, whatever the
    /// number of ranks.
    public static func scores(_ model: LoadedModel, images: ImageSet, seed: UInt64, importanceSamples k: Int,
                              batchSize: Int, communicator: Communicator) throws -> SampleScores {
        let n = images.count, z = model.latentSize
        let columns = k > 1 ? 4 : 3
        var all = [Double](repeating: 0, count: n * columns)   // image-major: rec, kl, (−log p)
        let block = ShardPlan.block(count: n, rank: communicator.rank, size: communicator.size)
        let elboNoise = RandomStream(seed: seed, domain: .evaluationNoise)
        let iwNoise = RandomStream(seed: seed, domain: .evaluationNoise, 1)
        var start = block.lowerBound
        while start < block.upperBound {
            let end = min(start + batchSize, block.upperBound)
            let b = end - start
            let batch = model.batch(of: images, start..<end)
            let noise = Tensor(shape: [b, z], scalars: elboNoise.normals(count: b * z, offset: start * z))
            let terms = model.terms(batch, noise: noise)
            for i in 0..<b {
                all[(start + i) * columns] = terms.reconstructionPerSample[i]
                all[(start + i) * columns + 1] = terms.klPerSample[i]
            }
            if k > 1 {
                let normals = iwNoise.normals(count: b * k * z, offset: start * k * z)
                let noise = (0..<k).map { kk in
                    Tensor(shape: [b, z], unsafeUninitialized: { out in
                        for i in 0..<b { for j in 0..<z { out[i * z + j] = normals[(i * k + kk) * z + j] } }
                    })
                }
                let estimate = model.importanceWeightedEstimate(batch, noise: noise).logLikelihood
                for i in 0..<b { all[(start + i) * columns + 2] = -estimate[i] }
            }
            start = end
        }
        try communicator.allreduceSum(&all)
        let rec = (0..<n).map { all[$0 * columns] }, kl = (0..<n).map { all[$0 * columns + 1] }
        return SampleScores(negativeELBO: zip(rec, kl).map { $0 + $1 }, reconstruction: rec, kl: kl,
                            negativeLogLikelihood: k > 1 ? (0..<n).map { all[$0 * columns + 2] } : nil,
                            importanceSamples: k)
    }
}

/// How well a score separates anomalies (positives) from normal samples:
/// the numbers of An & Cho (2015) and of anomaly-detection papers since.
public enum AnomalyMetrics {
    /// The area under the ROC curve: the probability that a random anomaly
    /// scores higher than a random normal sample, ties counting one half
    /// (the Mann–Whitney U statistic with average ranks; scikit-learn's
    /// `roc_auc_score`). Nil without both kinds.
    public static func auroc(scores: [Double], positive: [Bool]) -> Double? {
        let p = positive.filter { $0 }.count, n = positive.count - p
        guard p > 0, n > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let averageRank = Double(i + j) / 2 + 1
            for t in i...j where positive[order[t]] { rankSum += averageRank }
            i = j + 1
        }
        return (rankSum - Double(p) * Double(p + 1) / 2) / (Double(p) * Double(n))
    }

    /// Average precision: Σ (R_k − R_(k−1)) P_k over the thresholds at each
    /// distinct score, highest first, with no interpolation (scikit-learn's
    /// `average_precision_score`). Nil without positives.
    public static func averagePrecision(scores: [Double], positive: [Bool]) -> Double? {
        let p = positive.filter { $0 }.count
        guard p > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var (truePositives, seen, previousRecall, ap) = (0, 0, 0.0, 0.0)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            for t in i...j {
                seen += 1
                if positive[order[t]] { truePositives += 1 }
            }
            let recall = Double(truePositives) / Double(p), precision = Double(truePositives) / Double(seen)
            ap += (recall - previousRecall) * precision
            previousRecall = recall
            i = j + 1
        }
        return ap
    }

    /// The value a fraction `q` of `scores` exceeds: the (1 − q) quantile,
    /// linearly interpolated (NumPy's default).
    public static func threshold(exceededBy q: Double, of scores: [Double]) -> Double {
        let s = scores.sorted()
        guard s.count > 1 else { return s.first ?? 0 }
        let position = (1 - q) * Double(s.count - 1)
        let lo = Int(position.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (position - Double(lo))
    }

    /// Counts at a threshold: anomalies are samples scoring above it.
    public struct Confusion: Equatable, Sendable {
        public var truePositives = 0, falsePositives = 0, trueNegatives = 0, falseNegatives = 0
    }

    public static func confusion(scores: [Double], positive: [Bool], threshold: Double) -> Confusion {
        var c = Confusion()
        for (score, isPositive) in zip(scores, positive) {
            switch (score > threshold, isPositive) {
            case (true, true): c.truePositives += 1
            case (true, false): c.falsePositives += 1
            case (false, false): c.trueNegatives += 1
            case (false, true): c.falseNegatives += 1
            }
        }
        return c
    }
}
