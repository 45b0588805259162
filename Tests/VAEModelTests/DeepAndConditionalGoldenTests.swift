import Foundation
import _Differentiation
import XCTest
import TestSupport
import TensorCore
@testable import VAEModel

/// Forward values, the loss and every parameter gradient of a model against
/// a PyTorch golden file from scripts/dev/make_golden_models.py.
private func checkAgainstGolden<Model: VariationalAutoencoder>(
    _ model: Model, _ g: Golden, condition: Tensor, file: StaticString = #filePath, line: UInt = #line
) throws where Model.Posterior == GaussianPosterior {
    let xShape = try XCTUnwrap((g.json["x"] as? [String: Any])?["shape"] as? [Int])
    let b = xShape[0]
    let x = try g.tensor("x").reshaped([b, xShape.dropFirst().reduce(1, *)]), eps = try g.tensor("eps")
    let q = model.encode(x, condition: condition, on: cpu)
    assertClose(q.mean, try g.tensor("mu"), "mu", file: file, line: line)
    assertClose(q.logVariance, try g.tensor("logvar"), "logvar", file: file, line: line)
    let z = reparameterize(mean: q.mean, logVariance: q.logVariance, noise: eps)
    assertClose(model.decode(z, condition: condition, on: cpu).location, try g.tensor("logits").reshaped([b, x.shape[1]]),
                "logits", file: file, line: line)
    let (terms, pullback) = valueWithPullback(at: model) { m in
        negativeELBO(m, x: x, condition: condition, noise: eps, likelihood: .bernoulli, on: cpu)
    }
    assertClose(terms.reconstruction + terms.kl, try g.number("loss_sum"), "loss sum", file: file, line: line)
    let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [model.latentSize])))
    let expected = try g.tensors("gradients")
    var checked = 0
    for (name, tensor) in gradientsByName(grad, of: model) where tensor.count > 0 || expected[name] != nil {
        assertClose(tensor, try XCTUnwrap(expected[name], name), rtol: 1e-4, atol: 1e-5, "∂\(name)", file: file, line: line)
        checked += 1
    }
    XCTAssertEqual(checked, expected.count, "every golden gradient compared", file: file, line: line)
}

private func oneHotCondition(_ g: Golden) throws -> Tensor {
    let labels = try XCTUnwrap(g.json["labels"] as? [Int]).map(Int32.init)
    let k = try XCTUnwrap((g.json["config"] as? [String: Any])?["classes"] as? Int)
    return Tensor(oneHot: labels, classes: k)
}

/// golden/conv3_rgb_vae.json: three stride-2 stages (4, 6, 8 channels) on
/// 3×16×16 images, the decoder mirroring them.
final class DeepConvVAEGoldenTests: XCTestCase {
    func testThreeStageRGBModel() throws {
        let g = try Golden("conv3_rgb_vae")
        var model = ConvVAE(channels: 3, height: 16, width: 16, convChannels: [4, 6, 8], latentSize: 3, seed: 0)
        model.load(try g.tensors("parameters"))
        XCTAssertEqual(model.namedParameters.filter { $0.tensor.count > 0 }.map(\.name), [
            "enc.conv1.weight", "enc.conv1.bias", "enc.conv2.weight", "enc.conv2.bias", "enc.conv3.weight", "enc.conv3.bias",
            "enc.fc_mu.weight", "enc.fc_mu.bias", "enc.fc_logvar.weight", "enc.fc_logvar.bias", "dec.fc.weight", "dec.fc.bias",
            "dec.deconv1.weight", "dec.deconv1.bias", "dec.deconv2.weight", "dec.deconv2.bias",
            "dec.deconv3.weight", "dec.deconv3.bias",
        ])
        try checkAgainstGolden(model, g, condition: Tensor(zeros: [2, 0]))
    }

    func testDepthsFromOneToFive() {
        // Shapes and parameter counts follow the options for every depth; gradients reach every stage.
        for depth in 1...5 {
            let channels = Array([3, 4, 5, 6, 7].prefix(depth))
            let options = ConvVAE.Options(channels: channels, latentSize: 2, likelihood: .gaussianLearned)
            let image = ImageShape(channels: 2, height: 32, width: 64)
            XCTAssertNoThrow(try options.validate(for: image))
            let model = options.makeModel(for: image, seed: 3)
            XCTAssertEqual(model.parameterLayout.count, options.parameterCount(for: image), "depth \(depth)")
            let x = Tensor(uniformFrom: RandomStream(seed: 1, domain: .sampling), shape: [3, image.size], low: 0, high: 1)
            let eps = Tensor(normalsFrom: RandomStream(seed: 2, domain: .sampling), shape: [3, 2])
            let (_, pullback) = valueWithPullback(at: model) {
                negativeELBO($0, x: x, noise: eps, likelihood: .gaussianLearned, on: cpu)
            }
            let grad = pullback(.init(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [2])))
            // Zero-element heads (the unused missing-value fill) have a symbolic-zero gradient.
            let nonEmpty = model.namedParameters.indices.filter { model.namedParameters[$0].tensor.count > 0 }
            XCTAssertEqual(nonEmpty.map { grad.namedParameters[$0].tensor.shape }, nonEmpty.map { model.namedParameters[$0].tensor.shape })
            for (name, tensor) in gradientsByName(grad, of: model) where !name.hasSuffix("bias") && name != "enc.missing_fill" {
                XCTAssertTrue(tensor.scalars.contains { $0 != 0 }, "depth \(depth): ∂\(name) is zero")
            }
        }
    }

    func testImageSizeMustDivideByTheStages() {
        let options = ConvVAE.Options(channels: [8, 8, 8], latentSize: 2)
        XCTAssertThrowsError(try options.validate(for: ImageShape(channels: 1, height: 28, width: 28))) { error in
            XCTAssertTrue("\(error)".contains("divisible by 2^3 = 8"), "\(error)")
            XCTAssertTrue("\(error)".contains("the images are 1×28×28"), "\(error)")
        }
        XCTAssertNoThrow(try options.validate(for: ImageShape(channels: 1, height: 24, width: 40)))
    }

    func testTwoStageStreamsAreTheOldModels() {
        // The two-stage model draws its layers from the same streams as before any depth existed.
        let model = ConvVAE(channels: 1, height: 8, width: 8, convChannels: [4, 6], latentSize: 2, seed: 5)
        func stream(_ layer: UInt32) -> RandomStream { RandomStream(seed: 5, domain: .initialization, layer) }
        XCTAssertEqual(model.decoder.stages[0].weight, ConvTranspose2D(inputChannels: 6, outputChannels: 4, kernel: 3, stream: stream(5)).weight)
        XCTAssertEqual(model.output.weight, ConvTranspose2D(inputChannels: 4, outputChannels: 1, kernel: 3, stream: stream(6)).weight)
        XCTAssertEqual(model.fc.weight, Dense(inputSize: 2, outputSize: 24, stream: stream(4)).weight)
    }
}

/// golden/conditional_mlp_vae.json and conditional_conv_vae.json: the one-hot
/// label beside the input (MLP), as constant channels (conv), and beside z.
final class ConditionalVAEGoldenTests: XCTestCase {
    func testConditionalMLP() throws {
        let g = try Golden("conditional_mlp_vae")
        var model = MLPVAE(dataSize: 12, hiddenSize: 8, latentSize: 3, classes: 4, seed: 0)
        model.load(try g.tensors("parameters"))
        XCTAssertEqual(model.classes, 4)
        XCTAssertEqual(model.fc1.weight.shape, [8, 16])
        try checkAgainstGolden(model, g, condition: try oneHotCondition(g))
    }

    func testConditionalConv() throws {
        let g = try Golden("conditional_conv_vae")
        var model = ConvVAE(channels: 1, height: 8, width: 8, convChannels: [4, 6], latentSize: 2, classes: 3, seed: 0)
        model.load(try g.tensors("parameters"))
        XCTAssertEqual(model.classes, 3)
        XCTAssertEqual(model.encoder.stages[0].weight.shape, [4, 4, 3, 3])
        try checkAgainstGolden(model, g, condition: try oneHotCondition(g))
    }

    func testOptionsCountTheConditionalInputs() {
        let image = ImageShape(channels: 3, height: 8, width: 8)
        for options in [Architecture.mlp(.init(hiddenSize: 5, latentSize: 2, conditionalClasses: 4)),
                        .conv(.init(channels: [3, 4], latentSize: 2, conditionalClasses: 4))] {
            func count<O: ArchitectureOptions>(_ o: O) -> Int { o.makeModel(for: image, seed: 1).parameterLayout.count }
            let made: Int
            switch options {
            case .mlp(let o): made = count(o)
            case .conv(let o): made = count(o)
            }
            XCTAssertEqual(made, options.parameterCount(for: image), options.family)
        }
    }

    func testUnconditionalOptionsEncodeAsBefore() throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        let plain = String(decoding: try encoder.encode(Architecture.mlp(.init())), as: UTF8.self)
        XCTAssertFalse(plain.contains("conditional"), plain)
        let conditional = String(decoding: try encoder.encode(Architecture.conv(.init(conditionalClasses: 7))), as: UTF8.self)
        XCTAssertTrue(conditional.contains("\"conditional_classes\":7"), conditional)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        XCTAssertEqual(try decoder.decode(Architecture.self, from: Data(conditional.utf8)).conditionalClasses, 7)
        XCTAssertEqual(try decoder.decode(Architecture.self, from: Data(plain.utf8)), .mlp(.init()))
    }

    /// `--no-encoder-condition`: the label enters the decoder only; the encoder reads x alone.
    func testDecoderOnlyConditioning() throws {
        var options = MLPVAE.Options(hiddenSizes: [8], latentSize: 3, conditionalClasses: 4)
        options.conditionEncoder = false
        let shape = ImageShape(channels: 1, height: 1, width: 12)
        let model = options.makeModel(for: shape, seed: 0)
        XCTAssertFalse(model.conditionsEncoder)
        XCTAssertEqual(model.fc1.weight.shape, [8, 12])
        XCTAssertEqual(model.fc3.weight.shape, [8, 7])
        var counted = 0
        var walked = model
        walked.walkParameters { _, t in counted += t.count }
        XCTAssertEqual(options.parameterCount(for: shape), counted)
        let x = randomTensor([2, 12], low: 0, high: 1, seed: 1)
        let a = model.encode(x, condition: Tensor(oneHot: [0, 1], classes: 4), on: cpu)
        let b = model.encode(x, condition: Tensor(oneHot: [3, 2], classes: 4), on: cpu)
        XCTAssertEqual(a.mean, b.mean, "the encoder does not read the label")
        let z = randomTensor([2, 3], seed: 2)
        XCTAssertNotEqual(model.decode(z, condition: Tensor(oneHot: [0, 1], classes: 4), on: cpu).location,
                          model.decode(z, condition: Tensor(oneHot: [3, 2], classes: 4), on: cpu).location, "the decoder does")
        // Written only when off; the default conditions the encoder as before.
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let json = String(decoding: try encoder.encode(Architecture.mlp(options)), as: UTF8.self)
        XCTAssertTrue(json.contains("\"condition_encoder\":false"), json)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        XCTAssertFalse(try decoder.decode(Architecture.self, from: Data(json.utf8)).conditionEncoder)
        XCTAssertFalse(String(decoding: try encoder.encode(Architecture.mlp(MLPVAE.Options(conditionalClasses: 4))), as: UTF8.self)
            .contains("condition_encoder"))
        // The gradient still flows to every parameter the label touches, and to fc1.
        let batch = DataBatch(input: x, target: x, condition: Tensor(oneHot: [0, 1], classes: 4))
        let (_, pullback) = valueWithPullback(at: model) { m in
            negativeELBO(m, batch: batch, noise: randomTensor([2, 3], seed: 3), likelihood: .bernoulli, on: cpu)
        }
        let g = pullback(ELBOTerms.TangentVector(reconstruction: 1, klPerDimension: Tensor(repeating: 1, shape: [3])))
        XCTAssertTrue(g.fc1.weight.materialized(shape: [8, 12]).scalars.contains { $0 != 0 })
    }
}
