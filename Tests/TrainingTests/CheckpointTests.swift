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
        let data = DataSplits(train: barsDataset(count: 301, seed: 1), test: barsDataset(count: 67, seed: 2))
        guard case .mlp(let options) = c.architecture else { throw XCTSkip("an MLP configuration") }
        return try Trainer(options, configuration: c, data: data, communicator: LocalCommunicator(),
                           console: Console(rank: 0, forceQuiet: true), resumingFrom: checkpoint, backend: cpu)
    }

    func configuration(_ dir: String, maxSteps: Int?) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.runDirectory = dir
        c.epochs = 3
        c.batchSize = 32
        c.architecture = .mlp(.init(hiddenSize: 32, latentSize: 2))
        c.maxSteps = maxSteps
        c.logEvery = 4
        return c
    }

    /// A run checkpointed at step 12 (mid-epoch 2) that went on to step 17
    /// before it stopped, resumed from that checkpoint to 27, gives the
    /// parameters and optimizer state of an uninterrupted run, bit for bit;
    /// and its metrics are those of the uninterrupted run: what the first
    /// run logged after its checkpoint (steps 16 and 17, an evaluation at 17)
    /// is superseded, each step appears once.
    func testResumeMidEpochIsExact() throws {
        let straight = try trainer(configuration(try temporaryDirectory() + "/a", maxSteps: 27))
        _ = try straight.run()

        let dir = try temporaryDirectory() + "/b"
        var first = configuration(dir, maxSteps: 17)
        first.checkpointEvery = 12
        _ = try trainer(first).run()
        let interrupted = try metrics(dir)
        XCTAssertEqual(interrupted.last?["step"] as? Int, 17, "the first run logged past its checkpoint")
        let checkpoint = try Checkpoint(path: "\(dir)/checkpoints/step-00000012.json")
        XCTAssertEqual(checkpoint.sidecar.step, 12)
        XCTAssertEqual(checkpoint.sidecar.epoch, 2)
        XCTAssertEqual(checkpoint.sidecar.stepInEpoch, 2)
        let resumed = try trainer(configuration(dir, maxSteps: 27), resumingFrom: checkpoint)
        XCTAssertEqual(resumed.position.step, 12)
        XCTAssertEqual(resumed.position.epoch, 2)
        XCTAssertEqual(resumed.position.stepInEpoch, 2)
        _ = try resumed.run()
        XCTAssertEqual(resumed.model, straight.model, "parameters bit-identical")
        XCTAssertEqual(resumed.optimizer.adam.firstMoment, straight.optimizer.adam.firstMoment)
        XCTAssertEqual(resumed.optimizer.adam.secondMoment, straight.optimizer.adam.secondMoment)
        XCTAssertEqual(resumed.optimizer.adam.step, 27)
        XCTAssertEqual(resumed.position.samplesSeen, straight.position.samplesSeen)
        // The metrics: the uninterrupted run's, value for value (timings aside).
        func values(_ records: [[String: Any]]) -> [NSDictionary] {
            records.map { NSDictionary(dictionary: $0.filter { $0.key != "samples_per_s" && $0.key != "elapsed_s" }) }
        }
        let after = try metrics(dir), expected = try metrics(straight.configuration.runDirectory)
        XCTAssertEqual(after.compactMap { $0["step"] as? Int }, expected.compactMap { $0["step"] as? Int })
        XCTAssertEqual(values(after), values(expected))
        // The 2-D latent space gets its pictures.
        XCTAssertTrue(Files.exists("\(dir)/latent-manifold/epoch-0003.png"))
        XCTAssertTrue(Files.exists("\(dir)/latent-scatter/epoch-0003.png"))
    }

    func metrics(_ run: String) throws -> [[String: Any]] {
        try Files.readText("\(run)/metrics.jsonl").split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
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
        try Files.writeAtomically(text.replacingOccurrences(of: "\"format_version\" : \(CheckpointSidecar.currentVersion)", with: "\"format_version\" : 99"), to: sidecar)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".contains("format version 99 is newer"), "\(error)")
        }
        // An edited value: the sidecar's own checksum refuses it before its configuration is used.
        try Files.writeAtomically(text.replacingOccurrences(of: "\"log_every\" : ", with: "\"log_every\" : 1"), to: sidecar)
        XCTAssertThrowsError(try Checkpoint(path: dir)) { error in
            XCTAssertTrue("\(error)".contains("fails its own checksum"), "\(error)")
        }
        try Files.writeAtomically(text, to: sidecar)
        XCTAssertNoThrow(try Checkpoint(path: dir))
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
        XCTAssertEqual(Array(means[20..<22]), model.posteriorMean(data.batch([10])).scalars)
    }

    /// A checkpoint of format version 1 (written by vae-mpi before the
    /// architecture and data source became values; Fixtures/checkpoint-v1,
    /// an MLP 144-8-2 after 2 steps, seed 3, lr 0.01, β 0.5) still loads.
    func testReadsFormatVersion1() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "step-00000002", withExtension: "json",
                                                  subdirectory: "Fixtures/checkpoint-v1"))
        let checkpoint = try Checkpoint(path: url.path)
        XCTAssertEqual(checkpoint.sidecar.formatVersion, 1)
        XCTAssertEqual(checkpoint.architecture, .mlp(.init(hiddenSize: 8, latentSize: 2, likelihood: .bernoulli)))
        XCTAssertEqual(checkpoint.sidecar.image, ImageShape(channels: 1, height: 12, width: 12))
        let c = checkpoint.configuration
        XCTAssertEqual([c.batchSize, c.epochs, c.logEvery, c.keepCheckpoints], [16, 10, 50, 3])
        XCTAssertEqual(c.seed, 3)
        XCTAssertEqual(c.learningRate, 0.01)
        XCTAssertEqual(c.kl, KLControls(beta: 0.5))
        XCTAssertEqual(c.data, DataSource(directory: "/tmp/v1/data"))
        XCTAssertEqual(checkpoint.sidecar.position, TrainingPosition(step: 2, epoch: 1, stepInEpoch: 2, samplesSeen: 32))
        guard case .mlp(let options) = checkpoint.architecture else { return XCTFail("an MLP") }
        let model = try checkpoint.model(options)
        for (name, tensor) in model.namedParameters where tensor.count > 0 {
            XCTAssertEqual(tensor.scalars, checkpoint.tensors[name]?.scalars, name)
        }
        let adam = try checkpoint.adam(layout: model.parameterLayout)
        XCTAssertEqual(adam.step, 2)
        XCTAssertEqual(Array(adam.secondMoment.prefix(8 * 144)), checkpoint.tensors["optimizer.exp_avg_sq.fc1.weight"]?.scalars)
        XCTAssertEqual(try checkpoint.loadedModel().latentSize, 2)
    }

    func testNormalQuantile() {
        XCTAssertEqual(normalQuantile(0.5), 0, accuracy: 1e-12)
        XCTAssertEqual(normalQuantile(0.975), 1.959963984540054, accuracy: 1e-9)
        XCTAssertEqual(normalQuantile(0.05), -1.6448536269514722, accuracy: 1e-9)
        XCTAssertEqual(normalQuantile(1e-6), -4.753424308822899, accuracy: 1e-8)
    }
}
