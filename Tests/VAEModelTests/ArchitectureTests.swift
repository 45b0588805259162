import XCTest
import Foundation
import TensorCore
import TestSupport
@testable import VAEModel

/// The model families as values: defaults, validation, parameter counts,
/// building, and their Codable form (what config.json and checkpoints hold).
final class ArchitectureTests: XCTestCase {
    let mnist = ImageShape(channels: 1, height: 28, width: 28)

    func testFamiliesAndDefaults() {
        XCTAssertEqual(Architecture.familyNames, ["mlp", "conv"])
        XCTAssertEqual(Architecture.defaults(family: "mlp"), .mlp(.init(hiddenSize: 400, latentSize: 20)))
        XCTAssertEqual(Architecture.defaults(family: "conv"), .conv(.init(channels: [32, 64], latentSize: 16)))
        XCTAssertNil(Architecture.defaults(family: "transformer"))
        var a = Architecture.defaults(family: "conv")!
        a.latentSize = 5
        a.likelihood = .gaussian(sigma: 0.5)
        XCTAssertEqual(a, .conv(.init(channels: [32, 64], latentSize: 5, likelihood: .gaussian(sigma: 0.5))))
        XCTAssertEqual(a.summary(for: mnist), "conv 1×28×28 → 32, 64 → 5")
        XCTAssertEqual(Architecture.mlp(.init()).summary(for: mnist), "mlp 784-400-20")
    }

    /// The counts each family states without building a model equal those of the model it builds.
    func testParameterCountsMatchTheBuiltModels() {
        let rgb = ImageShape(channels: 3, height: 16, width: 20)
        for architecture: Architecture in [
            .mlp(.init()), .mlp(.init(hiddenSize: 7, latentSize: 3, likelihood: .gaussianLearned)),
            .conv(.init()), .conv(.init(channels: [5, 6], latentSize: 2, likelihood: .gaussianLearned)),
        ] {
            for image in [mnist, rgb] {
                func built<Options: ArchitectureOptions>(_ o: Options) -> Int {
                    o.makeModel(for: image, seed: 1).parameterLayout.count
                }
                XCTAssertEqual(architecture.parameterCount(for: image), built(architecture.options),
                               "\(architecture.summary(for: image)), \(architecture.likelihood)")
            }
        }
        XCTAssertEqual(Architecture.mlp(.init()).parameterCount(for: mnist), 652_824)
    }

    func testValidationAgainstImageShapes() {
        XCTAssertNoThrow(try Architecture.conv(.init()).validate(for: mnist))
        XCTAssertThrowsError(try Architecture.conv(.init()).validate(for: ImageShape(channels: 1, height: 8, width: 6))) {
            XCTAssertEqual($0 as? ArchitectureError, .unsupportedImage(
                family: "conv", image: ImageShape(channels: 1, height: 8, width: 6),
                requirement: .sidesDivisible(stages: 2)))
        }
        XCTAssertThrowsError(try Architecture.conv(.init(channels: [])).validate(for: mnist))
        XCTAssertThrowsError(try Architecture.conv(.init(channels: [3, 0])).validate(for: mnist))
        XCTAssertNoThrow(try Architecture.conv(.init(channels: [3])).validate(for: ImageShape(channels: 1, height: 2, width: 6)))
        XCTAssertThrowsError(try Architecture.mlp(.init(hiddenSize: 0)).validate(for: mnist))
        XCTAssertNoThrow(try Architecture.mlp(.init()).validate(for: ImageShape(channels: 1, height: 1, width: 3)))
    }

    func testCodableForm() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let conv = Architecture.conv(.init(channels: [8, 16], latentSize: 4, likelihood: .gaussian(sigma: 0.5)))
        let text = String(decoding: try encoder.encode(conv), as: UTF8.self)
        XCTAssertEqual(text, #"{"channels":[8,16],"family":"conv","latent_size":4,"likelihood":{"sigma":0.5,"type":"gaussian"}}"#)
        for architecture: Architecture in [conv, .mlp(.init()), .mlp(.init(likelihood: .gaussianLearned))] {
            XCTAssertEqual(try decoder.decode(Architecture.self, from: try encoder.encode(architecture)), architecture)
        }
        XCTAssertThrowsError(try decoder.decode(Architecture.self, from: Data(#"{"family":"rnn"}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("unknown model family"), "\($0)")
        }
        XCTAssertThrowsError(try decoder.decode(Likelihood.self, from: Data(#"{"type":"gaussian","sigma":-1}"#.utf8)))
        XCTAssertEqual(try decoder.decode(Likelihood.self, from: Data(#"{"type":"gaussian-learned"}"#.utf8)), .gaussianLearned)
    }

    func testKLControls() {
        let plain = KLControls(beta: 2)
        XCTAssertEqual(plain.weight(atStep: 1), 2)
        let ramp = KLControls(beta: 2, warmupSteps: 4)
        XCTAssertEqual((1...6).map(ramp.weight(atStep:)), [0.5, 1, 1.5, 2, 2, 2])
        XCTAssertFalse(ramp.needsGlobalKLPerDimension)
        XCTAssertEqual(ramp.klSeed(beta: 1.5, latentSize: 3, global: nil), Tensor(repeating: 1.5, shape: [3]))
        XCTAssertEqual(ramp.objective(reconstruction: 10, kl: 3, beta: 1.5, global: nil), 14.5)
        // Free bits λ = 0.5 over 4 samples: a floor of 2 nats per dimension.
        let free = KLControls(beta: 1, freeBits: 0.5)
        XCTAssertTrue(free.needsGlobalKLPerDimension)
        let global = (klPerDimension: [Float(1), 3, 2.5], count: Float(4))
        XCTAssertEqual(free.klSeed(beta: 1, latentSize: 3, global: global), Tensor(shape: [3], scalars: [0, 1, 1]))
        XCTAssertEqual(free.objective(reconstruction: 10, kl: 6.5, beta: 1, global: global), 10 + 2 + 3 + 2.5)
    }
}
