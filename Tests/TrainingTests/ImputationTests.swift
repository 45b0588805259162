import Foundation
import XCTest
import TestSupport
import Collectives
import Datasets
import TensorCore
@testable import Training
import VAEModel

/// Imputation against brute force on a model small enough to integrate:
/// one latent dimension, so p(x_obs) and E[x_miss | x_obs] are integrals
/// over a line (issue 19).
final class ImputationTests: XCTestCase {
    /// A model with random weights: a proper joint p(x, z) whatever its
    /// training, and an encoder q(z | x) that is a poor fit to its posterior
    /// (which importance weights and Metropolis–Hastings correct and
    /// pseudo-Gibbs does not).
    func smallModel() -> LoadedModel {
        let options = MLPVAE.Options(hiddenSizes: [8], latentSize: 1, likelihood: .gaussianLearned)
        let image = ImageShape(channels: 1, height: 1, width: 3)
        return LoadedModel(options.makeModel(for: image, seed: 5), architecture: .mlp(options), image: image, backend: cpu)
    }

    /// E[x_miss | x_obs] by quadrature over z on [−10, 10].
    func bruteForce(_ model: LoadedModel, x: Tensor, mask: Tensor) -> [Double] {
        let n = 20001
        let z = Tensor(shape: [n, 1], scalars: (0..<n).map { Float(-10 + 20 * Double($0) / Double(n - 1)) })
        let output = model.decode(z)
        let nll = model.likelihood.negativeLogLikelihoodPerSample(x.repeatingRows(n), given: output, mask: mask.repeatingRows(n))
        let logPrior = model.logPrior(z)
        let logJoint = (0..<n).map { -nll[$0] + logPrior[$0] }
        let top = logJoint.max()!
        let weights = logJoint.map { Foundation.exp($0 - top) }
        let total = weights.reduce(0, +)
        let mean = model.likelihood.mean(output).scalars
        return (0..<3).map { j in (0..<n).reduce(0.0) { $0 + weights[$1] * Double(mean[$1 * 3 + j]) } / total }
    }

    let x = Tensor(shape: [1, 3], scalars: [0.8, 0, -0.4])
    let mask = Tensor(shape: [1, 3], scalars: [1, 0, 1])

    func testImportanceSamplingMatchesBruteForce() {
        let model = smallModel()
        let exact = bruteForce(model, x: x, mask: mask)[1]
        var settings = ImputationSettings()
        settings.samples = 20000
        settings.seed = 3
        let result = Imputer(model: model, settings: settings).impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 0)
        XCTAssertEqual(result.single[0], 0.8, "observed values are kept")
        XCTAssertEqual(result.single[2], -0.4)
        XCTAssertEqual(Double(result.single[1]), exact, accuracy: 0.01, "SNIS \(result.single[1]) vs quadrature \(exact)")
        // Few draws are further off; the same seed gives the same bytes.
        settings.samples = 5
        let few = Imputer(model: model, settings: settings).impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 0)
        XCTAssertEqual(few.single, Imputer(model: model, settings: settings)
            .impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 0).single)
        // Resampled imputations keep the observed values and vary where missing.
        settings.samples = 2000
        settings.multiple = 50
        let multiple = Imputer(model: model, settings: settings).impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 7)
        XCTAssertEqual(multiple.draws.count, 150)
        XCTAssertTrue((0..<50).allSatisfy { multiple.draws[$0 * 3] == 0.8 && multiple.draws[$0 * 3 + 2] == -0.4 })
        XCTAssertGreaterThan(Set((0..<50).map { multiple.draws[$0 * 3 + 1] }).count, 10)
    }

    func testMetropolisWithinGibbsTargetsTheConditional() {
        let model = smallModel()
        let exact = bruteForce(model, x: x, mask: mask)[1]
        var settings = ImputationSettings()
        settings.method = .mwg
        settings.iterations = 200
        settings.multiple = 200
        settings.seed = 4
        let mwg = Imputer(model: model, settings: settings).impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 0)
        XCTAssertEqual(Double(mwg.single[1]), exact, accuracy: 0.03, "MwG \(mwg.single[1]) vs quadrature \(exact)")
        XCTAssertGreaterThan(mwg.accepted, 0)
        XCTAssertLessThan(mwg.accepted, mwg.proposed, "an independence sampler rejects some moves of a poor proposal")
        settings.method = .pseudoGibbs
        let pseudo = Imputer(model: model, settings: settings).impute(x, mask: mask, condition: Tensor(zeros: [1, 0]), index: 0)
        XCTAssertEqual(pseudo.accepted, pseudo.proposed, "pseudo-Gibbs accepts every move")
        // Here q is far from the posterior, and pseudo-Gibbs's stationary law is not p(x_miss | x_obs).
        XCTAssertGreaterThan(abs(Double(pseudo.single[1]) - exact), 3 * abs(Double(mwg.single[1]) - exact))
        print("E[x_miss | x_obs]: quadrature \(exact), Metropolis-within-Gibbs \(mwg.single[1]), pseudo-Gibbs \(pseudo.single[1])")
    }

    /// ρ = p(x̂|z̃) p(z̃) q(z|x̂) / (p(x̂|z) p(z) q(z̃|x̂)): each term with its sign.
    func testAcceptanceRatioTermByTerm() {
        let base = (a: -3.5, b: -1.25, c: -2.0, d: -4.0, e: -0.75, f: -1.5)
        func ratio(_ t: (a: Double, b: Double, c: Double, d: Double, e: Double, f: Double)) -> Double {
            mwgLogAcceptance(logLikelihoodProposal: t.a, logPriorProposal: t.b, logQProposal: t.c,
                             logLikelihoodCurrent: t.d, logPriorCurrent: t.e, logQCurrent: t.f)
        }
        XCTAssertEqual(ratio(base), (-3.5 - 1.25 + 2.0) - (-4.0 - 0.75 + 1.5), accuracy: 1e-12)
        let r0 = ratio(base)
        var t = base; t.a += 1; XCTAssertEqual(ratio(t) - r0, 1, accuracy: 1e-12, "log p(x̂|z̃) enters with +")
        t = base; t.b += 1; XCTAssertEqual(ratio(t) - r0, 1, accuracy: 1e-12, "log p(z̃) enters with +")
        t = base; t.c += 1; XCTAssertEqual(ratio(t) - r0, -1, accuracy: 1e-12, "log q(z̃|x̂) enters with −")
        t = base; t.d += 1; XCTAssertEqual(ratio(t) - r0, -1, accuracy: 1e-12, "log p(x̂|z) enters with −")
        t = base; t.e += 1; XCTAssertEqual(ratio(t) - r0, -1, accuracy: 1e-12, "log p(z) enters with −")
        t = base; t.f += 1; XCTAssertEqual(ratio(t) - r0, 1, accuracy: 1e-12, "log q(z|x̂) enters with +")
        // With q equal to the exact posterior every move is accepted: the ratio is 0.
        XCTAssertEqual(mwgLogAcceptance(logLikelihoodProposal: -2, logPriorProposal: -1, logQProposal: -3 + 5,
                                        logLikelihoodCurrent: -4, logPriorCurrent: -2, logQCurrent: -6 + 5), 0, accuracy: 1e-12)
    }

    /// A sample's imputation does not depend on the other samples or on how
    /// the rows are split: the same row alone and in a set give the same bytes.
    func testRowsAreIndependent() throws {
        let model = smallModel()
        var values: [Float] = [0.8, .nan, -0.4, 0.1, 0.2, .nan, .nan, .nan, .nan]
        let set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: 3), values: SampleValues(floats: values),
                           kind: .vectors(columns: ["a", "b", "c"]))
        XCTAssertEqual(set.missingCount, 5)
        var settings = ImputationSettings()
        settings.samples = 100
        settings.multiple = 2
        let imputer = Imputer(model: model, settings: settings)
        let all = try imputer.imputeAll(set, communicator: LocalCommunicator())
        let alone = imputer.impute(set.batch(1..<2), mask: set.mask([1]), condition: Tensor(zeros: [1, 0]), index: 1)
        XCTAssertEqual(Array(all.single[3..<6]), alone.single)
        XCTAssertEqual(Array(all.draws[3..<6]), Array(alone.draws[0..<3]))
        XCTAssertEqual(Array(all.draws[12..<15]), Array(alone.draws[3..<6]))
        // The row with nothing observed is imputed (from the model's marginal), with finite values.
        XCTAssertTrue(all.single[6..<9].allSatisfy { $0.isFinite })
        values[1] = 0.5
        XCTAssertEqual(all.single[0], 0.8)
    }
}
