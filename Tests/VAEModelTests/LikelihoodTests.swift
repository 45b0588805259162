import _Differentiation
import Foundation
import XCTest
import TestSupport
import TensorCore
@testable import VAEModel

/// A decoder output of one row from P planes of n values (plane 0 the
/// location, the others the auxiliary head, parameter-major).
private func output(planes: [Float], count p: Int) -> DecoderOutput {
    let n = planes.count / p
    return DecoderOutput(location: Tensor(shape: [1, n], scalars: Array(planes[0..<n])),
                         auxiliary: Tensor(shape: [1, (p - 1) * n], scalars: Array(planes[n...])))
}

final class DiscreteLikelihoodGoldenTests: XCTestCase {
    /// Fixtures/likelihood_golden.json, from scripts/dev/make_golden_likelihoods.py (PyTorch, float64).
    func testLogProbabilitiesAndGradientsMatchPyTorch() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "likelihood_golden", withExtension: "json",
                                                  subdirectory: "Fixtures"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 9)
        for c in cases {
            let note = try XCTUnwrap(c["note"] as? String)
            let levels = try XCTUnwrap(c["levels"] as? Int), mixtures = try XCTUnwrap(c["mixtures"] as? Int)
            let x = try XCTUnwrap(c["x"] as? [Double]).map(Float.init)
            let parameters = try XCTUnwrap(c["parameters"] as? [Double]).map(Float.init)
            let logp = try XCTUnwrap(c["log_probability"] as? [Double])
            let grad = try XCTUnwrap(c["gradient"] as? [Double])
            let planes = try XCTUnwrap(c["planes"] as? Int)
            let likelihood: Likelihood
            switch c["likelihood"] as? String {
            case "beta-binomial": likelihood = Likelihood(BetaBinomialLikelihood(levels: levels))
            case "student-t": likelihood = Likelihood(StudentTLikelihood())
            default: likelihood = Likelihood(DiscretizedLogisticLikelihood(mixtures: mixtures, levels: levels))
            }
            XCTAssertEqual(likelihood.outputsPerDimension, planes, note)
            let out = output(planes: parameters, count: planes)
            let (terms, gradient) = likelihood.elementTerms(Tensor(shape: [1, x.count], scalars: x), given: out, gradient: true)
            // The Float kernels round a bin's centre k/(K−1) and edges to Float (about 3e−8): at a scale s that moves
            // the logistic's arguments by 3e−8/s, so the tolerance grows with 1/s (e^9 ≈ 8100 at the clamp).
            let n = x.count
            let sharpness = (0..<n).map { j -> Double in
                guard likelihood.name == DiscretizedLogisticLikelihood.name else { return 0 }
                return (0..<mixtures).map { exp(-min(max(Double(parameters[(mixtures + $0) * n + j]), -9), 7)) }.max()!
            }
            for i in 0..<n {
                // Float kernels against float64: about 1e-6 relative, plus the rounding of large values.
                XCTAssertEqual(Double(terms[i]), -logp[i], accuracy: 2e-4 + 2e-5 * abs(logp[i]) + 1.2e-7 * sharpness[i],
                               "\(note): −log p[\(i)]")
            }
            let g = try XCTUnwrap(gradient)
            let analytic = g.location.scalars + (g.auxiliary.isSymbolicZero ? [] : g.auxiliary.scalars)
            XCTAssertEqual(analytic.count, grad.count, note)
            for i in 0..<grad.count {
                XCTAssertEqual(Double(analytic[i]), -grad[i], accuracy: 1e-4 + 2e-3 * abs(grad[i]) + 2e-7 * sharpness[i % n],
                               "\(note): ∂/∂ parameter \(i / n) of element \(i % n)")
            }
        }
    }
}

final class LikelihoodTests: XCTestCase {
    /// Levels of every element, as floats; parameters drawn in a moderate range.
    func levels(_ n: Int, of k: Int, seed: UInt32) -> Tensor {
        let u = RandomStream(seed: 3, domain: .sampling, seed).uniforms(count: n)
        return Tensor(shape: [1, n], scalars: u.map { Float(min(Int($0 * Float(k)), k - 1)) })
    }

    func testDiscreteGradientsMatchFiniteDifferences() {
        let n = 10
        for (likelihood, planes) in [(Likelihood(DiscretizedLogisticLikelihood(mixtures: 1, levels: 16)), 2),
                                     (Likelihood(DiscretizedLogisticLikelihood(mixtures: 2, levels: 16)), 6),
                                     (Likelihood(BetaBinomialLikelihood(levels: 16)), 2)] {
            let x = levels(n, of: 16, seed: UInt32(planes))
            var location = randomTensor([1, n], low: 0, high: 1, seed: 40)
            var auxiliary = randomTensor([1, (planes - 1) * n], low: -2.5, high: -0.5, seed: 41)
            if likelihood.name == BetaBinomialLikelihood.name {
                location = randomTensor([1, n], low: -1, high: 2, seed: 42)
                auxiliary = randomTensor([1, n], low: -1, high: 2, seed: 43)
            }
            assertGradientMatchesFiniteDifferences(
                of: { l in negativeLogLikelihood(x, given: DecoderOutput(location: l, auxiliary: auxiliary), under: likelihood) },
                at: location, h: 1e-3, atol: 5e-3, rtol: 1e-2, "\(likelihood) ∂ head 0")
            assertGradientMatchesFiniteDifferences(
                of: { a in negativeLogLikelihood(x, given: DecoderOutput(location: location, auxiliary: a), under: likelihood) },
                at: auxiliary, h: 1e-3, atol: 5e-3, rtol: 1e-2, "\(likelihood) ∂ auxiliary heads")
        }
    }

    func testLevelProbabilitiesSumToOneAndMatchTheTrainingTerms() {
        let n = 40
        let cases: [(Likelihood, Int, Int)] = [
            (Likelihood(DiscretizedLogisticLikelihood(mixtures: 1, levels: 256)), 2, 256),
            (Likelihood(DiscretizedLogisticLikelihood(mixtures: 3, levels: 256)), 9, 256),
            (Likelihood(DiscretizedLogisticLikelihood(mixtures: 2, levels: 3)), 6, 3),
            (Likelihood(BetaBinomialLikelihood(levels: 256)), 2, 256),
            (Likelihood(BetaBinomialLikelihood(levels: 2)), 2, 2),
            (.bernoulli, 1, 2),
        ]
        for (likelihood, planes, k) in cases {
            // Parameters from moderate to extreme (log-scales down to the clamp, locations outside [0, 1]).
            let location = randomTensor([1, n], low: -3, high: 4, seed: 50)
            let auxiliary = randomTensor([1, (planes - 1) * n], low: -10, high: 6, seed: 51)
            let out = DecoderOutput(location: location, auxiliary: planes == 1 ? Tensor(zeros: [1, 0]) : auxiliary)
            let probabilities = likelihood.levelProbabilities(out)!
            XCTAssertEqual(probabilities.count, n * k)
            let x = levels(n, of: k, seed: 52)
            let target = likelihood.name == BernoulliLikelihood.name ? x : x
            let terms = likelihood.elementTerms(target, given: out, gradient: false).terms
            for i in 0..<n {
                let row = probabilities[i * k ..< (i + 1) * k]
                XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6, "\(likelihood), element \(i): Σ_k P(k)")
                XCTAssertTrue(row.allSatisfy { $0 >= 0 && $0.isFinite })
                // The training kernel's −log P of the element's level is the same distribution's.
                let p = row[i * k + Int(x.scalars[i])]
                XCTAssertEqual(Double(terms[i]), -log(p), accuracy: 1e-4 + 1e-5 * abs(log(p)), "\(likelihood), element \(i)")
            }
        }
    }

    func testTheMeanIsTheExpectedLevel() {
        let n = 6
        for (likelihood, planes) in [(Likelihood(DiscretizedLogisticLikelihood(mixtures: 2, levels: 8)), 6),
                                     (Likelihood(BetaBinomialLikelihood(levels: 8)), 2)] {
            let out = DecoderOutput(location: randomTensor([1, n], low: 0, high: 1, seed: 60),
                                    auxiliary: randomTensor([1, (planes - 1) * n], low: -2, high: 1, seed: 61))
            let probabilities = likelihood.levelProbabilities(out)!
            let mean = likelihood.mean(out)
            for i in 0..<n {
                let expected = (0..<8).reduce(0.0) { $0 + Double($1) * probabilities[i * 8 + $1] } / 7
                XCTAssertEqual(Double(mean.scalars[i]), expected, accuracy: 1e-5, "\(likelihood): E[level]/(K−1)")
            }
        }
    }

    func testSamplesFollowTheLevelProbabilities() {
        // One element, 20000 draws: the frequencies of the levels within 4 standard errors.
        let likelihood = Likelihood(DiscretizedLogisticLikelihood(mixtures: 2, levels: 4))
        let draws = 20_000
        let out = DecoderOutput(location: Tensor(repeating: 0.4, shape: [draws, 1]),
                                auxiliary: Tensor(shape: [draws, 5], scalars: Array(repeating: [0.9, -1.5, -0.5, 0.3, -0.2],
                                                                                     count: draws).flatMap { $0 }))
        let p = Array(likelihood.levelProbabilities(DecoderOutput(location: Tensor(shape: [1, 1], scalars: [0.4]),
                                                                  auxiliary: Tensor(shape: [1, 5], scalars: [0.9, -1.5, -0.5, 0.3, -0.2])))!)
        let samples = likelihood.sample(out, uniforms: ElementUniforms(stream: RandomStream(seed: 5, domain: .sampling)))
        for level in 0..<4 {
            let frequency = Double(samples.scalars.filter { Int(($0 * 3).rounded()) == level }.count) / Double(draws)
            let se = (p[level] * (1 - p[level]) / Double(draws)).squareRoot()
            XCTAssertEqual(frequency, p[level], accuracy: 4 * se + 1e-9, "level \(level)")
        }
    }

    func testBernoulliFromLogits() {
        let logits = randomTensor([3, 4], low: -6, high: 6, seed: 14), x = randomTensor([3, 4], low: 0, high: 1, seed: 15)
        let none = Tensor(zeros: [3, 0])
        assertGradientMatchesFiniteDifferences(
            of: { l in negativeLogLikelihood(x, given: DecoderOutput(location: l, auxiliary: none), under: .bernoulli) },
            at: logits, "BCE ∂logits")
        var expected: Double = 0
        for i in 0..<x.count {
            let l = Double(logits.scalars[i]), t = Double(x.scalars[i])
            let p = 1 / (1 + Foundation.exp(-l))
            expected += -(t * Foundation.log(p) + (1 - t) * Foundation.log(1 - p))
        }
        let loss = negativeLogLikelihood(x, given: DecoderOutput(location: logits, auxiliary: none), under: .bernoulli)
        XCTAssertEqual(Double(loss), expected, accuracy: 1e-5 * expected)
    }

    func testBernoulliIsStableForLargeLogits() {
        let logits = Tensor(shape: [1, 4], scalars: [-200, -90, 90, 200])
        let x = Tensor(shape: [1, 4], scalars: [1, 0, 1, 0])
        let none = Tensor(zeros: [1, 0])
        // Exact: softplus(200) + softplus(-90) + softplus(-90) + softplus(200) ≈ 400.
        XCTAssertEqual(negativeLogLikelihood(x, given: DecoderOutput(location: logits, auxiliary: none), under: .bernoulli),
                       400, accuracy: 1e-3)
        let g = gradient(at: logits) { l in
            negativeLogLikelihood(x, given: DecoderOutput(location: l, auxiliary: none), under: .bernoulli)
        }
        // σ(−90) = 8e-40 is below Float's normal range; fastExp flushes it to ~1e-38.
        for (a, e) in zip(g.scalars, [-1, 0, 0, 1] as [Float]) { XCTAssertEqual(a, e, accuracy: 1e-30) }
    }

    func testGaussianWithLearnedVariance() {
        let mean = randomTensor([3, 4], seed: 17), x = randomTensor([3, 4], low: 0, high: 1, seed: 18)
        let lv = randomTensor([3, 4], low: -2, high: 2, seed: 19)
        let l = Likelihood.gaussianLearned
        assertGradientMatchesFiniteDifferences(
            of: { m in negativeLogLikelihood(x, given: DecoderOutput(location: m, auxiliary: lv), under: l) }, at: mean, "NLL ∂μ")
        assertGradientMatchesFiniteDifferences(
            of: { v in negativeLogLikelihood(x, given: DecoderOutput(location: mean, auxiliary: v), under: l) }, at: lv,
            "NLL ∂logσ²")
        var expected: Double = 0
        for i in 0..<x.count {
            let r = Double(x.scalars[i] - mean.scalars[i]), v = Double(lv.scalars[i])
            expected += 0.5 * (r * r * Foundation.exp(-v) + v + Foundation.log(2 * Double.pi))
        }
        XCTAssertEqual(Double(negativeLogLikelihood(x, given: DecoderOutput(location: mean, auxiliary: lv), under: l)),
                       expected, accuracy: 1e-5 * abs(expected))
        // Outside the clamp range the log variance gets no gradient.
        let clamped = Tensor(repeating: 12, shape: [3, 4])
        XCTAssertEqual(gradient(at: clamped) { v in negativeLogLikelihood(x, given: DecoderOutput(location: mean, auxiliary: v), under: l) },
                       Tensor(zeros: [3, 4]))
    }

    func testComponentsAreValuesWithTheirOwnRules() throws {
        // Codable round trips, with the settings and the levels the data gave.
        let decoder = JSONDecoder(), encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        for likelihood in [Likelihood.bernoulli, .gaussian(sigma: 0.25), .gaussianLearned,
                           Likelihood(DiscretizedLogisticLikelihood(mixtures: 5, levels: 256)),
                           Likelihood(BetaBinomialLikelihood(levels: 17))] {
            let data = try encoder.encode(likelihood)
            XCTAssertEqual(try decoder.decode(Likelihood.self, from: data), likelihood, String(decoding: data, as: UTF8.self))
        }
        XCTAssertEqual(String(decoding: try encoder.encode(Likelihood(DiscretizedLogisticLikelihood(mixtures: 2, levels: 256))),
                              as: UTF8.self), #"{"levels":256,"mixtures":2,"type":"discretized-logistic"}"#)
        XCTAssertThrowsError(try decoder.decode(Likelihood.self, from: Data(#"{"type":"discretized-logistic","mixtures":0}"#.utf8)))
        XCTAssertThrowsError(try decoder.decode(Likelihood.self, from: Data(#"{"type":"poisson-ish"}"#.utf8)))
        // Settings: by name, each to the likelihood that takes it.
        XCTAssertEqual(try Likelihood(named: "gaussian", settings: LikelihoodSettings(sigma: 0.5)), .gaussian(sigma: 0.5))
        XCTAssertEqual(try Likelihood(named: "discretized-logistic", settings: LikelihoodSettings(mixtures: 3)).outputsPerDimension, 9)
        XCTAssertThrowsError(try Likelihood(named: "bernoulli", settings: LikelihoodSettings(sigma: 0.5))) {
            XCTAssertEqual($0 as? LikelihoodError, .settingNotApplicable(.sigma, likelihood: "bernoulli", takenBy: ["gaussian"]))
        }
        XCTAssertThrowsError(try Likelihood(named: "gaussian", settings: LikelihoodSettings(sigma: -1))) {
            XCTAssertEqual($0 as? InvalidSetting, InvalidSetting("sigma", "must be positive (got -1.0)"))
        }
        XCTAssertThrowsError(try Likelihood(named: "discretized-logistic", settings: LikelihoodSettings(mixtures: 40))) {
            XCTAssertEqual(($0 as? InvalidSetting)?.field, "mixtures")
        }
        XCTAssertThrowsError(try Likelihood(named: "laplace")) {
            XCTAssertEqual($0 as? LikelihoodError, .unknown(name: "laplace", known: Likelihood.names))
        }
    }

    func testEachLikelihoodRefusesDataOutsideItsDomainNamingTheFileAndTheRule() throws {
        let bytes = DataDescription(source: "/d/x.npy", levels: 256, range: 0...1, storage: "uint8")
        let floats = DataDescription(source: "/d/f.npy", levels: nil, range: -0.5...2, storage: "float32")
        let logistic = Likelihood(DiscretizedLogisticLikelihood())
        XCTAssertNoThrow(try Likelihood.bernoulli.check(bytes))
        XCTAssertNoThrow(try logistic.check(bytes))
        XCTAssertNoThrow(try Likelihood.gaussian(sigma: 1).check(floats))
        XCTAssertThrowsError(try Likelihood.bernoulli.check(floats)) {
            XCTAssertEqual("\($0)", "/d/f.npy: the bernoulli likelihood needs values in [0, 1]; the values range over "
                           + "[-0.5, 2.0] (use a Gaussian likelihood, or scale the data)")
        }
        XCTAssertThrowsError(try logistic.check(floats)) {
            XCTAssertEqual("\($0)", "/d/f.npy: the discretized-logistic likelihood needs integer levels 0…K−1 (8-bit images, "
                           + "or integer arrays with their number of levels); the values are real (float32)")
        }
        // A likelihood fitted to 256 levels refuses data of 16.
        let fitted = logistic.resolved(for: bytes)
        XCTAssertEqual(fitted.levels, 256)
        XCTAssertThrowsError(try fitted.check(DataDescription(source: "/d/s.npy", levels: 16, range: 0...1, storage: "uint8"))) {
            XCTAssertEqual("\($0)", "/d/s.npy: the discretized-logistic likelihood needs 256 levels; the data has 16")
        }
        // Bits per dimension only where −log₂ p is a code length.
        XCTAssertTrue(fitted.isCodeLength(for: bytes))
        XCTAssertFalse(Likelihood.bernoulli.isCodeLength(for: bytes))
        XCTAssertTrue(Likelihood.bernoulli.isCodeLength(for: DataDescription(source: "", levels: 2, range: 0...1, storage: "")))
        XCTAssertFalse(Likelihood.gaussianLearned.isCodeLength(for: bytes))
    }

    func testDecoderHeadsAreSizedByTheLikelihood() {
        let image = ImageShape(channels: 2, height: 4, width: 4)
        for likelihood in [Likelihood.bernoulli, .gaussianLearned, Likelihood(DiscretizedLogisticLikelihood(mixtures: 3)),
                           Likelihood(BetaBinomialLikelihood())] {
            for architecture in [Architecture.mlp(.init(hiddenSize: 5, latentSize: 2, likelihood: likelihood)),
                                 .conv(.init(channels: [3, 4], latentSize: 2, likelihood: likelihood))] {
                func check<O: ArchitectureOptions>(_ options: O) {
                    let model = options.makeModel(for: image, seed: 1)
                    XCTAssertEqual(model.parameterLayout.count, options.parameterCount(for: image), "\(architecture)")
                    let out = model.decode(Tensor(zeros: [3, 2]), condition: Tensor(zeros: [3, 0]), on: cpu)
                    XCTAssertEqual(out.location.shape, [3, image.size])
                    XCTAssertEqual(out.auxiliary.shape, [3, (likelihood.outputsPerDimension - 1) * image.size])
                    let names = model.namedParameters.filter { $0.tensor.count > 0 }.map(\.name)
                    if likelihood.outputsPerDimension > 1 {
                        XCTAssertTrue(names.contains { $0.contains("_" + likelihood.auxiliaryHeadName + ".weight") }, "\(names)")
                    }
                }
                check(architecture.options)
            }
        }
    }
}

/// The count likelihoods against PyTorch: Fixtures/count_likelihood_golden.json
/// from scripts/dev/make_golden_counts.py (scvi-tools' NB and ZINB formulas,
/// torch's Poisson, Mult-VAE's multinomial), rows with zeros, 5000 counts, an
/// empty row, tiny and huge θ.
final class CountLikelihoodTests: XCTestCase {
    func testCountLikelihoodsMatchPyTorch() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "count_likelihood_golden", withExtension: "json",
                                                  subdirectory: "Fixtures"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 5)
        for c in cases {
            let note = try XCTUnwrap(c["note"] as? String)
            let (b, d, planes) = (try XCTUnwrap(c["rows"] as? Int), try XCTUnwrap(c["width"] as? Int), try XCTUnwrap(c["planes"] as? Int))
            let likelihood = try Likelihood(named: try XCTUnwrap(c["likelihood"] as? String))
            XCTAssertEqual(likelihood.outputsPerDimension, planes, note)
            func floats(_ key: String) throws -> [Float] { try XCTUnwrap(c[key] as? [Double]).map(Float.init) }
            let x = Tensor(shape: [b, d], scalars: try floats("x"))
            let out = DecoderOutput(location: Tensor(shape: [b, d], scalars: try floats("location")),
                                    auxiliary: Tensor(shape: [b, (planes - 1) * d], scalars: try floats("auxiliary")))
            let (terms, gradient) = likelihood.elementTerms(x, given: out, gradient: true)
            let expected = try XCTUnwrap(c["negative_log_probability"] as? [Double])
            for i in 0..<(b * d) {
                XCTAssertEqual(Double(terms[i]), expected[i], accuracy: 1e-4 + 1e-5 * abs(expected[i]), "\(note): −log p[\(i)]")
            }
            let g = try XCTUnwrap(gradient)
            for (name, analytic, key) in [("logits", g.location, "gradient_location"), ("auxiliary", g.auxiliary, "gradient_auxiliary")] {
                let want = try XCTUnwrap(c[key] as? [Double])
                let got = want.isEmpty ? [] : analytic.materialized(shape: [b, want.count / b]).scalars
                XCTAssertEqual(got.count, want.count, "\(note): \(name)")
                for i in 0..<min(got.count, want.count) {
                    XCTAssertEqual(Double(got[i]), want[i], accuracy: 1e-4 + 1e-4 * abs(want[i]), "\(note): ∂\(name)[\(i)]")
                }
            }
        }
    }

    /// A row's shares sum to 1, and a one-count draw is one-hot.
    func testMeansAndDraws() throws {
        for name in ["multinomial", "poisson", "negative-binomial", "zinb"] {
            let likelihood = try Likelihood(named: name)
            let p = likelihood.outputsPerDimension
            let out = DecoderOutput(location: randomTensor([3, 5], seed: 1), auxiliary: randomTensor([3, (p - 1) * 5], seed: 2))
            let mean = likelihood.mean(out)
            for r in 0..<3 {
                let total = mean.scalars[(r * 5)..<(r * 5 + 5)].reduce(0, +)
                if name == "zinb" { XCTAssertLessThan(total, 1) } else { XCTAssertEqual(total, 1, accuracy: 1e-5, name) }
            }
            let draw = likelihood.sample(out, uniforms: ElementUniforms(stream: RandomStream(seed: 3, domain: .sampling)))
            for r in 0..<3 { XCTAssertEqual(draw.scalars[(r * 5)..<(r * 5 + 5)].reduce(0, +), 1, name) }
        }
    }
}

/// `--dispersion feature`: the NB's θ is one learned value per feature.
final class FeatureDispersionTests: XCTestCase {
    func testRepeatedRowGradient() {
        let w = randomTensor([3, 4], seed: 9)
        assertGradientMatchesFiniteDifferences(of: { row in sum(repeatedRow(row, count: 3) * w) },
                                               at: randomTensor([4], seed: 8), "repeatedRow")
    }

    func testPerFeatureHeadIsTheSameForEverySampleAndLearns() throws {
        var options = MLPVAE.Options(hiddenSizes: [8], latentSize: 2, likelihood: try Likelihood(named: "negative-binomial"))
        options.featureDispersion = true
        let model = options.makeModel(for: ImageShape(channels: 1, height: 1, width: 5), seed: 1)
        XCTAssertTrue(model.hasFeatureDispersion)
        XCTAssertEqual(model.fc4Auxiliary.weight.shape, [5, 0])
        XCTAssertEqual(options.parameterCount(for: ImageShape(channels: 1, height: 1, width: 5)),
                       MLPVAE.Options(hiddenSizes: [8], latentSize: 2).parameterCount(for: ImageShape(channels: 1, height: 1, width: 5)) + 5)
        let out = model.decode(randomTensor([3, 2], seed: 2), condition: Tensor(zeros: [3, 0]), on: cpu)
        XCTAssertEqual(out.auxiliary.shape, [3, 5])
        XCTAssertEqual(Array(out.auxiliary.scalars[0..<5]), Array(out.auxiliary.scalars[10..<15]))
        let x = Tensor(shape: [3, 5], scalars: [0, 3, 1, 0, 7, 2, 0, 0, 1, 1, 5, 4, 0, 2, 0])
        let batch = DataBatch(input: x)
        let (_, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, batch: batch, noise: randomTensor([3, 2], seed: 3), likelihood: options.likelihood, on: cpu)
        }
        let g = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
        XCTAssertEqual(g.fc4Auxiliary.bias.materialized(shape: [5]).scalars.count, 5)
        XCTAssertTrue(g.fc4Auxiliary.bias.materialized(shape: [5]).scalars.contains { $0 != 0 })
        let wrong = MLPVAE.Options(hiddenSizes: [8], latentSize: 2, likelihood: try Likelihood(named: "zinb"))
        var zinb = wrong
        zinb.featureDispersion = true
        XCTAssertThrowsError(try zinb.validate(for: ImageShape(channels: 1, height: 1, width: 5)))
    }

    /// `--dispersion feature-covariate`: θ per feature and class, bias + W[:, k] for a sample of class k.
    func testPerCovariateHeadReadsTheClassAndItsGradientMatchesFiniteDifferences() throws {
        let nb = try Likelihood(named: "negative-binomial")
        var options = MLPVAE.Options(hiddenSizes: [8], latentSize: 2, likelihood: nb, conditionalClasses: 3)
        options.covariateDispersion = true
        let shape = ImageShape(channels: 1, height: 1, width: 5)
        try options.validate(for: shape)
        var model = options.makeModel(for: shape, seed: 1)
        XCTAssertTrue(model.hasCovariateDispersion)
        XCTAssertFalse(model.hasFeatureDispersion)
        XCTAssertEqual(model.fc4Auxiliary.weight.shape, [5, 3])
        var counted = 0
        model.walkParameters { _, t in counted += t.count }
        XCTAssertEqual(options.parameterCount(for: shape), counted)
        // Non-zero head parameters, so that the classes differ.
        model.fc4Auxiliary.weight = randomTensor([5, 3], seed: 4)
        model.fc4Auxiliary.bias = randomTensor([5], seed: 5)
        let classes: [Int32] = [2, 0, 2]
        let condition = Tensor(oneHot: classes, classes: 3)
        let out = model.decode(randomTensor([3, 2], seed: 2), condition: condition, on: cpu)
        for (b, k) in classes.enumerated() {
            for j in 0..<5 {
                XCTAssertEqual(out.auxiliary.scalars[b * 5 + j],
                               model.fc4Auxiliary.bias.scalars[j] + model.fc4Auxiliary.weight.scalars[j * 3 + Int(k)],
                               accuracy: 1e-6)
            }
        }
        // The negative ELBO's gradient with respect to the head, against finite differences.
        let x = Tensor(shape: [3, 5], scalars: [0, 3, 1, 0, 7, 2, 0, 0, 1, 1, 5, 4, 0, 2, 0])
        let batch = DataBatch(input: x, target: x, condition: condition)
        let noise = randomTensor([3, 2], seed: 3)
        func loss(_ m: MLPVAE) -> Float {
            let terms = negativeELBO(m, batch: batch, noise: noise, likelihood: nb, on: cpu)
            return terms.reconstruction + terms.klPerDimension.scalars.reduce(0, +)
        }
        let frozen = model
        let (_, pullback) = valueWithPullback(at: frozen) { m in
            negativeELBO(m, batch: batch, noise: noise, likelihood: nb, on: cpu)
        }
        let g = pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
        assertMatchesFiniteDifferences(g.fc4Auxiliary.weight, of: { w in
            var m = model
            m.fc4Auxiliary.weight = w
            return loss(m)
        }, at: model.fc4Auxiliary.weight, "∂ head weight")
        assertMatchesFiniteDifferences(g.fc4Auxiliary.bias, of: { b in
            var m = model
            m.fc4Auxiliary.bias = b
            return loss(m)
        }, at: model.fc4Auxiliary.bias, "∂ head bias")
        XCTAssertEqual(g.fc4Auxiliary.weight.materialized(shape: [5, 3]).scalars[1], 0, "class 1 has no sample: no gradient")
        // It needs classes, and the NB.
        var unconditional = options
        unconditional.conditionalClasses = 0
        XCTAssertThrowsError(try unconditional.validate(for: shape)) { XCTAssertTrue("\($0)".contains("needs the covariate"), "\($0)") }
        var poisson = options
        poisson.likelihood = try Likelihood(named: "poisson")
        XCTAssertThrowsError(try poisson.validate(for: shape))
    }
}
