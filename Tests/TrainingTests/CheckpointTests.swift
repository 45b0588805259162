import Foundation
import XCTest
import TestSupport
import Artifacts
import Collectives
import Datasets
import TensorCore
@testable import Training
import VAEModel

final class CheckpointTests: XCTestCase {
    func trainer(_ c: TrainingConfiguration, resumingFrom checkpoint: Checkpoint? = nil) throws -> Trainer<MLPVAE> {
        let data = LoadedData(train: barsDataset(count: 301, seed: 1), test: barsDataset(count: 67, seed: 2))
        let spec = ModelSpec(kind: .mlp, image: data.train.shape, hiddenSize: c.hiddenSize, latentSize: c.latentSize,
                             likelihood: .bernoulli)
        return try Trainer<MLPVAE>(configuration: c, spec: spec, data: data, communicator: LocalCommunicator(),
                                   console: Console(rank: 0, forceQuiet: true), resumingFrom: checkpoint)
    }

    func configuration(_ dir: String, maxSteps: Int?) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.runDirectory = dir
        c.epochs = 3
        c.batchSize = 32
        c.hiddenSize = 32
        c.latentSize = 2
        c.maxSteps = maxSteps
        c.logEvery = 4
        return c
    }

    /// Stopping at step 13 (mid-epoch 2) and resuming to 27 gives the
    /// parameters and optimizer state of an uninterrupted run, bit for bit.
    func testResumeMidEpochIsExact() throws {
        let straight = try trainer(configuration(try temporaryDirectory() + "/a", maxSteps: 27))
        _ = try straight.run()

        let dir = try temporaryDirectory() + "/b"
        _ = try trainer(configuration(dir, maxSteps: 13)).run()
        let checkpoint = try Checkpoint(path: dir)
        XCTAssertEqual(checkpoint.sidecar.step, 13)
        XCTAssertEqual(checkpoint.sidecar.epoch, 2)
        XCTAssertEqual(checkpoint.sidecar.stepInEpoch, 3)
        let resumed = try trainer(configuration(dir, maxSteps: 27), resumingFrom: checkpoint)
        XCTAssertEqual(resumed.globalStep, 13)
        XCTAssertEqual(resumed.epoch, 2)
        XCTAssertEqual(resumed.stepInEpoch, 3)
        _ = try resumed.run()
        XCTAssertEqual(resumed.model, straight.model, "parameters bit-identical")
        XCTAssertEqual(resumed.optimizer.firstMoment, straight.optimizer.firstMoment)
        XCTAssertEqual(resumed.optimizer.secondMoment, straight.optimizer.secondMoment)
        XCTAssertEqual(resumed.optimizer.step, 27)
        XCTAssertEqual(resumed.samplesSeen, straight.samplesSeen)
        // Metrics after the checkpoint were rewritten by the resumed run only once.
        let steps = try Files.readText("\(dir)/metrics.jsonl").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["step"] as? Int
        }
        XCTAssertEqual(steps, steps.sorted(), "metrics in step order after resuming")
        // The 2-D latent space gets its pictures.
        XCTAssertTrue(Files.exists("\(dir)/latent-manifold/epoch-0003.png"))
        XCTAssertTrue(Files.exists("\(dir)/latent-scatter/epoch-0003.png"))
    }

    func testDamagedCheckpointsAreRefused() throws {
        let dir = try temporaryDirectory() + "/run"
        _ = try trainer(configuration(dir, maxSteps: 5)).run()
        let (tensors, sidecar) = try CheckpointStore.resolve(dir)
        let good = try Files.read(tensors)

        // One flipped bit in the data: the checksum names the tensor.
        var flipped = good
        flipped[flipped.count - 3] ^= 0x10
        try Files.writeAtomically(flipped, to: tensors)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".hasPrefix(tensors), "\(error)")
            XCTAssertTrue("\(error)".contains("fails its checksum"), "\(error)")
        }
        // Truncated.
        try Files.writeAtomically(Array(good.prefix(good.count / 2)), to: tensors)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".contains("corrupt or truncated"), "\(error)")
        }
        try Files.writeAtomically(good, to: tensors)
        XCTAssertNoThrow(try Checkpoint(path: dir))
        // A sidecar from a newer format, and one that is not JSON.
        let text = try Files.readText(sidecar)
        try Files.writeAtomically(text.replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 99"), to: sidecar)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".contains("format version 99 is newer"), "\(error)")
        }
        try Files.writeAtomically("{ not json", to: sidecar)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".hasPrefix(sidecar), "\(error)")
        }
    }

    func testEvaluateReproducesTheTrainingTestLoss() throws {
        let dir = try temporaryDirectory() + "/run"
        let t = try trainer(configuration(dir, maxSteps: 9))
        let summary = try t.run()
        let model = try Checkpoint(path: dir).loadedModel()
        let data = barsDataset(count: 67, seed: 2)
        let trained = try XCTUnwrap(summary.finalEvaluation).loss
        // Same batches as training's evaluation: the same number, bit for bit;
        // other batches change only the order of float sums.
        let same = try Inference.evaluate(model, images: data, seed: 1, importanceSamples: 0, batchSize: 500,
                                          communicator: LocalCommunicator())
        XCTAssertEqual(same.loss, trained)
        let result = try Inference.evaluate(model, images: data, seed: 1, importanceSamples: 20, batchSize: 16,
                                            communicator: LocalCommunicator())
        XCTAssertEqual(result.loss, trained, accuracy: 1e-6 * trained)
        // The importance-weighted bound is tighter than the ELBO.
        XCTAssertLessThan(try XCTUnwrap(result.importanceWeightedNLL), result.loss)
        // Posterior means: one row per image, rows the encoder's.
        let means = try Inference.encodeMeans(model, images: data, batchSize: 10, communicator: LocalCommunicator())
        XCTAssertEqual(means.count, 67 * 2)
        XCTAssertEqual(Array(means[20..<22]), model.encode(data.batch([10])).mean.scalars)
    }

    func testNormalQuantile() {
        XCTAssertEqual(normalQuantile(0.5), 0, accuracy: 1e-12)
        XCTAssertEqual(normalQuantile(0.975), 1.959963984540054, accuracy: 1e-9)
        XCTAssertEqual(normalQuantile(0.05), -1.6448536269514722, accuracy: 1e-9)
        XCTAssertEqual(normalQuantile(1e-6), -4.753424308822899, accuracy: 1e-8)
    }
}
