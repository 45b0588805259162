import _Differentiation
import XCTest
import TestSupport
import TensorCore
@testable import VAEModel

/// golden/conv_vae.json: the conv VAE in miniature (1×8×8 images, channels
/// 4 and 6, latent 2): posterior, logits, loss and every parameter gradient.
final class ConvVAEGoldenTests: XCTestCase {
    func testForwardLossAndGradients() throws {
        let g = try Golden("conv_vae")
        var model = ConvVAE(channels: 1, height: 8, width: 8, convChannels: [4, 6], latentSize: 2, seed: 0)
        model.load(try g.tensors("parameters"))
        let x = try g.tensor("x").reshaped([2, 64]), eps = try g.tensor("eps")
        let q = model.encode(x, on: cpu)
        assertClose(q.mean, try g.tensor("mu"), "mu")
        assertClose(q.logVariance, try g.tensor("logvar"), "logvar")
        let z = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps)
        assertClose(model.decode(z, on: cpu).location, try g.tensor("logits").reshaped([2, 64]), "logits")
        let (terms, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, x: x, noise: eps, likelihood: .bernoulli, on: cpu)
        }
        assertClose(terms.reconstruction + terms.kl, try g.number("loss_sum"), "loss sum")
        let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
        let expected = try g.tensors("gradients")
        var checked = 0
        for (name, tensor) in gradientsByName(grad, of: model) where tensor.count > 0 || expected[name] != nil {
            assertClose(tensor, try XCTUnwrap(expected[name], name), rtol: 1e-4, atol: 1e-5, "∂\(name)")
            checked += 1
        }
        XCTAssertEqual(checked, expected.count, "every golden gradient compared")
        XCTAssertEqual(model.parameterLayout.nonEmptyEntries.count, 14)
    }

    func testGeometryIsAConstant() {
        let model = ConvVAE(channels: 3, height: 12, width: 8, convChannels: [5, 7], latentSize: 3, seed: 1)
        XCTAssertEqual(model.dataSize, 3 * 12 * 8)
        XCTAssertEqual(model.fcMean.weight.shape, [3, 7 * 3 * 2])
        let x = Tensor(uniformFrom: RandomStream(seed: 1, domain: .sampling), shape: [4, 288], low: 0, high: 1)
        let eps = Tensor(normalsFrom: RandomStream(seed: 2, domain: .sampling), shape: [4, 3])
        let (_, pullback) = valueWithPullback(at: model) { negativeELBO($0, x: x, noise: eps, likelihood: .bernoulli, on: cpu) }
        let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [3])))
        XCTAssertEqual(grad.geometry, .zero, "no gradient for the image geometry")
        var moved = model
        moved.move(by: grad)
        XCTAssertEqual(moved.geometry, model.geometry)
        XCTAssertEqual(model.decode(eps, on: cpu).location.shape, [4, 288])
        XCTAssertEqual(model.namedParameters.filter { $0.tensor.count > 0 }.map(\.name).first, "enc.conv1.weight")
    }
}

/// golden/gaussian_vae.json: the MLP with a Gaussian decoder that learns its
/// per-pixel log variance (`fc4_logvar`), β = 0.5.
final class GaussianVAEGoldenTests: XCTestCase {
    func testLearnedVarianceLossAndGradients() throws {
        let g = try Golden("gaussian_vae")
        let beta = Float(try XCTUnwrap((g.json["config"] as? [String: Any])?["beta"] as? Double))
        var model = MLPVAE(dataSize: 12, hiddenSize: 8, latentSize: 3, auxiliaryOutputs: 1, auxiliaryHeadName: "logvar", seed: 0)
        model.load(try g.tensors("parameters"))
        let x = try g.tensor("x"), eps = try g.tensor("eps")
        let q = model.encode(x, on: cpu)
        let out = model.decode(reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps), on: cpu)
        assertClose(out.location, try g.tensor("mean"), "mean")
        assertClose(out.auxiliary, try g.tensor("logvar_x"), "logvar_x")
        let (terms, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, x: x, noise: eps, likelihood: .gaussianLearned, on: cpu)
        }
        assertClose(terms.reconstruction, try g.number("nll_sum"), "NLL sum")
        assertClose(terms.kl, try g.number("kld_sum"), "KL sum")
        assertClose(terms.reconstruction + beta * terms.kl, try g.number("loss_sum"), "loss sum")
        let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: beta, shape: [3])))
        let expected = try g.tensors("gradients")
        for (name, tensor) in gradientsByName(grad, of: model) {
            assertClose(tensor, try XCTUnwrap(expected[name], name), rtol: 1e-4, atol: 1e-5, "∂\(name)")
        }
        XCTAssertEqual(gradientsByName(grad, of: model).count, expected.count)
        // Per-sample log-likelihoods (for the importance-weighted bound) sum to −NLL.
        let perSample = Likelihood.gaussianLearned.negativeLogLikelihoodPerSample(x, given: out)
        XCTAssertEqual(perSample.reduce(0, +), try g.number("nll_sum"), accuracy: 1e-4)
    }

    func testFixedVarianceIsATrueNegativeLogLikelihood() {
        let mean = Tensor(shape: [2, 2], scalars: [0.1, 0.5, 0.9, 0.3])
        let x = Tensor(shape: [2, 2], scalars: [0.0, 1.0, 0.5, 0.3])
        let sigma: Double = 0.7
        var expected = 0.0
        for i in 0..<4 {
            let r = Double(x.scalars[i] - mean.scalars[i])
            expected += 0.5 * (r * r / (sigma * sigma) + log(2 * Double.pi * sigma * sigma))
        }
        let likelihood = Likelihood.gaussian(sigma: sigma)
        let output = DecoderOutput(location: mean, auxiliary: Tensor(zeros: [2, 0]))
        let nll = negativeLogLikelihood(x, given: output, under: likelihood)
        XCTAssertEqual(Double(nll), expected, accuracy: 1e-5)
        XCTAssertEqual(likelihood.negativeLogLikelihoodPerSample(x, given: output).reduce(0, +), expected, accuracy: 1e-5)
        assertGradientMatchesFiniteDifferences(
            of: { m in negativeLogLikelihood(x, given: DecoderOutput(location: m, auxiliary: Tensor(zeros: [2, 0])), under: likelihood) },
            at: mean, "Gaussian NLL ∂μ")
    }
}
