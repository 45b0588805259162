import _Differentiation
import XCTest
import TestSupport
import TensorCore
@testable import VAEModel

/// Training on incomplete data and the importance-weighted bound (issue 19).
final class MissingDataTests: XCTestCase {
    let studentT = try! Likelihood(named: "student-t")

    /// golden/miwae_bound.json: the MIWAE bound of the authors' PyTorch
    /// notebook (Student-t, observed entries only, K = 5, a learned fill, a
    /// row with every entry missing): loss, KL and every gradient.
    func testMIWAEBoundMatchesPyTorch() throws {
        let g = try Golden("miwae_bound")
        var model = MLPVAE(dataSize: 4, hiddenSizes: [6, 5], latentSize: 2, auxiliaryOutputs: 2,
                           auxiliaryHeadName: "scale_df", learnedMissingFill: true, seed: 0)
        model.load(try g.tensors("parameters"))
        let x = try g.tensor("x"), mask = try g.tensor("mask"), eps = try g.tensor("eps")
        let batch = DataBatch(input: x, mask: mask)
        let noise = eps.reshaped([3, 5 * 2])    // row b: its K draws side by side
        let likelihood = studentT
        let (terms, pullback) = valueWithPullback(at: model) { m in
            m.importanceWeightedTerms(batch: batch, noise: noise, samples: 5, likelihood: likelihood, on: cpu)
        }
        assertClose(terms.reconstruction + terms.kl, try g.number("loss"), rtol: 2e-5, "−L_K")
        assertClose(terms.kl, try g.number("kl"), "KL")
        let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
        let expected = try g.tensors("gradients")
        let named = gradientsByName(grad, of: model)
        XCTAssertEqual(Set(named.map(\.name)), Set(expected.keys))
        for (name, tensor) in named {
            assertClose(tensor, try XCTUnwrap(expected[name], name), rtol: 1e-4, atol: 1e-5, "∂\(name)")
        }
        // The log weights themselves.
        let q = model.encode(x, mask: mask, condition: Tensor(zeros: [3, 0]), on: cpu)
        let z = reparameterizeRepeated(mean: q.mean, logVariance: q.logVariance, noise: eps, samples: 5)
        let logWeights = importanceLogWeights(x, given: model.decode(z, on: cpu), samples: z, noise: eps,
                                              logVariance: q.logVariance, count: 5, likelihood: likelihood, mask: mask,
                                              gradient: false).logWeights
        assertClose(Tensor(shape: [3, 5], scalars: logWeights.map(Float.init)), try g.tensor("log_weights"), rtol: 1e-4,
                    atol: 1e-4, "log w")
    }

    /// The bound's VJP with respect to its inputs, against finite differences
    /// (decoder outputs, draws and log σ²), with a mask.
    func testBoundGradientsMatchFiniteDifferences() {
        let (b, k, d, zDim) = (2, 3, 3, 2)
        let x = randomTensor([b, d], seed: 1)
        let mask = Tensor(shape: [b, d], scalars: [1, 0, 1, 1, 1, 0])
        let eps = randomTensor([b * k, zDim], seed: 2)
        let location = randomTensor([b * k, d], seed: 3), auxiliary = randomTensor([b * k, 2 * d], seed: 4)
        let z = randomTensor([b * k, zDim], seed: 5), logVariance = randomTensor([b, zDim], low: -1, high: 0.5, seed: 6)
        let likelihood = studentT
        func bound(_ location: Tensor, _ auxiliary: Tensor, _ z: Tensor, _ lv: Tensor) -> Float {
            negativeImportanceWeightedBound(x.zipMap(mask, *), given: DecoderOutput(location: location, auxiliary: auxiliary),
                                            samples: z, noise: eps, logVariance: lv, count: k, likelihood: likelihood,
                                            mask: mask)
        }
        let (_, pullback) = valueWithPullback(at: DecoderOutput(location: location, auxiliary: auxiliary), z, logVariance) {
            o, z, lv in
            negativeImportanceWeightedBound(x.zipMap(mask, *), given: o, samples: z, noise: eps, logVariance: lv, count: k,
                                            likelihood: likelihood, mask: mask)
        }
        let (dOutput, dz, dLogVariance) = pullback(1)
        assertMatchesFiniteDifferences(dOutput.location, of: { bound($0, auxiliary, z, logVariance) }, at: location,
                                       h: 1e-2, "∂location")
        assertMatchesFiniteDifferences(dOutput.auxiliary, of: { bound(location, $0, z, logVariance) }, at: auxiliary,
                                       h: 1e-2, "∂auxiliary")
        assertMatchesFiniteDifferences(dz, of: { bound(location, auxiliary, $0, logVariance) }, at: z, h: 1e-2, "∂z")
        assertMatchesFiniteDifferences(dLogVariance, of: { bound(location, auxiliary, z, $0) }, at: logVariance, h: 1e-2,
                                       "∂log σ²")
        // The repeated reparameterisation.
        let mean = randomTensor([b, zDim], seed: 7), r = randomTensor([b * k, zDim], seed: 8)
        assertGradientMatchesFiniteDifferences(
            of: { m in sum(reparameterizeRepeated(mean: m, logVariance: logVariance, noise: eps, samples: k) * r) },
            at: mean, "repeated ∂μ")
        assertGradientMatchesFiniteDifferences(
            of: { lv in sum(reparameterizeRepeated(mean: mean, logVariance: lv, noise: eps, samples: k) * r) },
            at: logVariance, "repeated ∂log σ²")
    }

    /// Missing targets add nothing and get no gradient; the zero fill
    /// leaves a complete batch's objective exactly as before.
    func testMaskedELBO() {
        let model = MLPVAE(dataSize: 6, hiddenSize: 5, latentSize: 2, auxiliaryOutputs: 2, auxiliaryHeadName: "scale_df",
                           seed: 3)
        let x = randomTensor([2, 6], seed: 1)
        let mask = Tensor(shape: [2, 6], scalars: [1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])
        let eps = randomTensor([2, 2], seed: 2)
        let zeroed = x.zipMap(mask, *)
        let terms = negativeELBO(model, batch: DataBatch(input: zeroed, mask: mask), noise: eps, likelihood: studentT, on: cpu)
        // Other values where the mask is 0 change nothing (the encoder reads 0 there, the likelihood skips them).
        let other = zeroed.zipMap(mask) { v, m in m == 0 ? 0 : v }
        var target = x
        for i in 0..<12 where mask.scalars[i] == 0 { target.scalars[i] = 7 }
        let changed = negativeELBO(model, batch: DataBatch(input: other, target: target, mask: mask), noise: eps,
                                   likelihood: studentT, on: cpu)
        XCTAssertEqual(terms.reconstruction, changed.reconstruction)
        // The second row has nothing observed: its reconstruction term is 0.
        let perRow = sampleTerms(model, batch: DataBatch(input: zeroed, mask: mask), noise: eps, likelihood: studentT, on: cpu)
        XCTAssertEqual(perRow.reconstructionPerSample[1], 0)
        XCTAssertEqual(Float(perRow.reconstructionPerSample.reduce(0, +)), terms.reconstruction, accuracy: 1e-4)
        // A mask of ones is the unmasked objective, bit for bit.
        let ones = Tensor(repeating: 1, shape: [2, 6])
        XCTAssertEqual(negativeELBO(model, batch: DataBatch(input: x, mask: ones), noise: eps, likelihood: studentT, on: cpu).reconstruction,
                       negativeELBO(model, batch: DataBatch(input: x), noise: eps, likelihood: studentT, on: cpu).reconstruction)
    }

    /// With a learned fill, its gradient flows through the first layer; the
    /// fill is a checkpointed parameter only then.
    func testLearnedFillGradient() {
        var options = MLPVAE.Options(hiddenSizes: [5], latentSize: 2, likelihood: studentT)
        let image = ImageShape(channels: 1, height: 1, width: 4)
        XCTAssertFalse(options.makeModel(for: image, seed: 1).namedParameters.contains { $0.name == "missing_fill" && $0.tensor.count > 0 })
        options.learnedMissingFill = true
        var model = options.makeModel(for: image, seed: 1)
        model.missingFill = Tensor(shape: [4], scalars: [0.3, -0.2, 0.5, 0.1])
        XCTAssertEqual(model.parameterLayout.count, options.parameterCount(for: image))
        let x = Tensor(shape: [2, 4], scalars: [0.5, 0, 1, 0, 0, -1, 0, 0.25])
        let mask = Tensor(shape: [2, 4], scalars: [1, 0, 1, 0, 0, 1, 0, 1])
        let eps = randomTensor([2, 2], seed: 4)
        let likelihood = studentT
        func loss(_ fill: Tensor) -> Float {
            var m = model
            m.missingFill = fill
            let t = negativeELBO(m, batch: DataBatch(input: x, mask: mask), noise: eps, likelihood: likelihood, on: cpu)
            return t.reconstruction + t.kl
        }
        let (_, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, batch: DataBatch(input: x, mask: mask), noise: eps, likelihood: likelihood, on: cpu)
        }
        let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
        assertMatchesFiniteDifferences(grad.missingFill, of: loss, at: model.missingFill, h: 1e-3, "∂missing_fill")
        XCTAssertTrue(grad.missingFill.scalars.contains { $0 != 0 })
        // Options round-trip through JSON with the fill named; the zero fill is written as before.
        let data = try! JSONEncoder().encode(options)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"missingFill\":\"learned\""))
        XCTAssertEqual(try! JSONDecoder().decode(MLPVAE.Options.self, from: data), options)
        options.learnedMissingFill = false
        XCTAssertFalse(String(decoding: try! JSONEncoder().encode(options), as: UTF8.self).contains("missingFill"))
    }
}
