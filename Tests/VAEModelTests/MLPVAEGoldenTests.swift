import _Differentiation
import XCTest
import TensorCore
import TestSupport
@testable import VAEModel

/// The miniature PyTorch-example VAE of golden/mlp_vae.json (12-8-3, batch 4):
/// forward values, loss terms, every parameter gradient and three Adam steps.
final class MLPVAEGoldenTests: XCTestCase {
    func goldenModel(_ g: Golden) throws -> MLPVAE {
        let config = try XCTUnwrap(g.json["config"] as? [String: Int])
        var model = MLPVAE(dataSize: config["input"]!, hiddenSize: config["hidden"]!,
                           latentSize: config["latent"]!, seed: 0)
        model.load(try g.tensors("parameters"))
        return model
    }

    func testForwardValuesAndLoss() throws {
        let g = try Golden("mlp_vae")
        let model = try goldenModel(g)
        let x = try g.tensor("x"), eps = try g.tensor("eps")
        let q = model.encode(x, on: cpu)
        assertClose(q.mean, try g.tensor("mu"), "mu")
        assertClose(q.logVariance, try g.tensor("logvar"), "logvar")
        let z = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps)
        assertClose(z, try g.tensor("z"), "z")
        assertClose(model.decode(z, on: cpu).location, try g.tensor("logits"), "logits")
        let terms = negativeELBO(model, x: x, noise: eps, likelihood: .bernoulli, on: cpu)
        assertClose(terms.reconstruction, try g.number("bce_sum"), "BCE sum")
        assertClose(terms.kl, try g.number("kld_sum"), "KL sum")
        assertClose(terms.reconstruction + terms.kl, try g.number("loss_sum"), "loss sum")
    }

    func testParameterGradients() throws {
        let g = try Golden("mlp_vae")
        let model = try goldenModel(g)
        let x = try g.tensor("x"), eps = try g.tensor("eps")
        let (_, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, x: x, noise: eps, likelihood: .bernoulli, on: cpu)
        }
        let grad = pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [3])))
        let expected = try g.tensors("gradients")
        var checked = 0
        for (name, tensor) in gradientsByName(grad, of: model) where expected[name] != nil {
            // Gradients near zero: absolute floor 1e-5 (sums of ~10 terms of size ~1).
            assertClose(tensor, expected[name]!, rtol: 1e-4, atol: 1e-5, "∂\(name)")
            checked += 1
        }
        XCTAssertEqual(checked, 10, "all ten parameter gradients compared")
    }

    func testThreeAdamSteps() throws {
        let g = try Golden("mlp_vae")
        var model = try goldenModel(g)
        let x = try g.tensor("x"), eps = try g.tensor("eps")
        let adamJSON = try XCTUnwrap(g.json["adam"] as? [String: Any])
        let steps = try XCTUnwrap(adamJSON["steps"] as? [[String: Any]])
        let layout = model.parameterLayout
        var adam = Adam(parameterCount: layout.count, learningRate: Float(adamJSON["lr"] as! Double),
                        beta1: Float(adamJSON["beta1"] as! Double), beta2: Float(adamJSON["beta2"] as! Double),
                        epsilon: Float(adamJSON["eps"] as! Double))
        let batch = Float(x.shape[0])
        for (k, step) in steps.enumerated() {
            let (terms, pullback) = valueWithPullback(at: model) { m in
                negativeELBO(m, x: x, noise: eps, likelihood: .bernoulli, on: cpu)
            }
            assertClose((terms.reconstruction + terms.kl) / batch,
                        try XCTUnwrap(step["loss_mean_before_step"] as? Double), "loss before step \(k + 1)")
            let flat = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [3]))).flattened(layout: layout)
            flat.withUnsafeBufferPointer { adam.update(&model, gradient: $0, gradientScale: 1 / batch, layout: layout) }
            let expected = try XCTUnwrap(step["parameters"] as? [String: Any]).mapValues { try Golden.tensor($0) }
            for (name, tensor) in model.namedParameters where tensor.count > 0 {
                // An Adam step moves each parameter by ≈ lr = 1e-3; 2e-6 absolute
                // is 0.2 % of a step.
                assertClose(tensor, expected[name]!, rtol: 1e-5, atol: 2e-6, "Adam step \(k + 1) \(name)")
            }
        }
        XCTAssertEqual(adam.step, 3)
    }

    func testParameterWalkNamesAndLayout() {
        let model = MLPVAE(dataSize: 784, hiddenSize: 400, latentSize: 20, seed: 1)
        let layout = model.parameterLayout
        XCTAssertEqual(layout.nonEmptyEntries.map(\.name),
                       ["fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
                        "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias"])
        XCTAssertEqual(layout.nonEmptyEntries.map(\.shape),
                       [[400, 784], [400], [20, 400], [20], [20, 400], [20], [400, 20], [400], [784, 400], [784]])
        XCTAssertEqual(layout.count, 784 * 400 + 400 + 2 * (20 * 400 + 20) + 20 * 400 + 400 + 400 * 784 + 784)
        // PyTorch's default init: uniform within ±1/√fan_in, and not degenerate.
        for (name, t) in model.namedParameters where t.count > 0 {
            let fanIn = name.hasPrefix("fc1") ? 784 : name.hasPrefix("fc2") || name.hasPrefix("fc4") ? 400 : 20
            let bound = 1 / Float(fanIn).squareRoot()
            XCTAssertLessThanOrEqual(t.scalars.map(abs).max()!, bound, name)
            XCTAssertGreaterThan(t.scalars.map(abs).max()!, 0.9 * bound, name)
        }
        // Same seed, same model; flatten and assign round-trip.
        XCTAssertEqual(model, MLPVAE(dataSize: 784, hiddenSize: 400, latentSize: 20, seed: 1))
        var other = MLPVAE(dataSize: 784, hiddenSize: 400, latentSize: 20, seed: 2)
        XCTAssertNotEqual(model, other)
        model.flattened(layout: layout).withUnsafeBufferPointer { other.assign(from: $0, layout: layout) }
        XCTAssertEqual(model, other)
    }
}

/// The importance-weighted bound of golden/mlp_iwae.json (K = 5) on the
/// model of mlp_vae.json.
final class IWAEGoldenTests: XCTestCase {
    func testImportanceWeightedEstimate() throws {
        let g = try Golden("mlp_vae"), iw = try Golden("mlp_iwae")
        var model = MLPVAE(dataSize: 12, hiddenSize: 8, latentSize: 3, seed: 0)
        model.load(try g.tensors("parameters"))
        let eps = try iw.tensor("eps")  // (K, B, Z)
        let (k, b, z) = (eps.shape[0], eps.shape[1], eps.shape[2])
        let noise = (0..<k).map { Tensor(shape: [b, z], scalars: Array(eps.scalars[$0 * b * z ..< ($0 + 1) * b * z])) }
        let result = importanceWeightedLogLikelihood(model, x: try g.tensor("x"), noise: noise, likelihood: .bernoulli, on: cpu)
        let expectedWeights = try iw.tensor("log_weights")  // (K, B)
        for kk in 0..<k {
            for i in 0..<b {
                let e = Double(expectedWeights.scalars[kk * b + i])
                XCTAssertEqual(result.logWeights[kk][i], e, accuracy: 1e-4 * abs(e), "log w[\(kk)][\(i)]")
            }
        }
        let expected = try iw.tensor("log_px_estimate")
        for i in 0..<b {
            let e = Double(expected.scalars[i])
            XCTAssertEqual(result.logLikelihood[i], e, accuracy: 1e-5 * abs(e), "log p(x[\(i)])")
        }
        // With one sample the estimate is that sample's ELBO term.
        let single = importanceWeightedLogLikelihood(model, x: try g.tensor("x"), noise: [noise[0]], likelihood: .bernoulli, on: cpu)
        XCTAssertEqual(single.logLikelihood, single.logWeights[0])
    }
}
