import Foundation
import XCTest
import TestSupport
import Artifacts
import Imaging
import Collectives
import Datasets
import TensorCore
@testable import Training
import VAEModel

/// Images of horizontal or vertical bars on 8×8: a dataset a VAE learns fast.
func barsDataset(count: Int, seed: UInt64) -> ImageSet {
    let words = RandomStream(seed: seed, domain: .sampling, 9).words(count: 2 * count)
    var pixels: [UInt8] = []
    var labels: [Int32] = []
    for i in 0..<count {
        let vertical = words[2 * i] & 1 == 0
        let position = Int(words[2 * i + 1] % 8)
        for y in 0..<8 { for x in 0..<8 { pixels.append((vertical ? x : y) == position ? 255 : 0) } }
        labels.append(vertical ? 1 : 0)
    }
    return ImageSet(shape: ImageShape(channels: 1, height: 8, width: 8), values: SampleValues(bytes: pixels), labels: labels)
}

final class TrainerTests: XCTestCase {
    func configuration(runDirectory: String) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.runDirectory = runDirectory
        c.epochs = 3
        c.batchSize = 32
        c.architecture = .mlp(.init(hiddenSize: 32, latentSize: 4))
        c.learningRate = 3e-3
        c.logEvery = 5
        c.verifyReplicas = true
        return c
    }

    func train(_ c: TrainingConfiguration) throws -> (TrainingSummary, Trainer<MLPVAE>) {
        let data = DataSplits(train: barsDataset(count: 301, seed: 1), test: barsDataset(count: 67, seed: 2))
        guard case .mlp(let options) = c.architecture else { throw XCTSkip("an MLP configuration") }
        let trainer = try Trainer(options, configuration: c, data: data,
                                  communicator: LocalCommunicator(), console: Console(rank: 0, forceQuiet: true), backend: cpu)
        return (try trainer.run(), trainer)
    }

    func testTrainingLearnsAndWritesTheRunDirectory() throws {
        let dir = try temporaryDirectory() + "/run"
        let (summary, trainer) = try train(configuration(runDirectory: dir))
        XCTAssertEqual(summary.steps, 3 * 10)  // ⌈301 / 32⌉ = 10 steps per epoch
        XCTAssertEqual(summary.samplesSeen, 3 * 301)
        let metrics = try Files.readText("\(dir)/metrics.jsonl").split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let train = metrics.filter { $0["type"] as? String == "train" }
        let eval = metrics.filter { $0["type"] as? String == "eval" }
        XCTAssertEqual(train.map { $0["step"] as? Int }, [5, 10, 15, 20, 25, 30])
        XCTAssertEqual(eval.count, 3)
        for key in ["step", "epoch", "loss", "samples_per_s", "reconstruction", "kl"] {
            XCTAssertNotNil(train[0][key], "train entries carry \(key)")
        }
        let first = try XCTUnwrap(train.first?["loss"] as? Double), last = try XCTUnwrap(train.last?["loss"] as? Double)
        XCTAssertLessThan(last, 0.8 * first, "training lowers the loss")
        let finalTest = try XCTUnwrap(summary.finalEvaluation)
        XCTAssertEqual(eval.last?["test_loss"] as? Double ?? 0, finalTest.loss, accuracy: 1e-9)
        XCTAssertEqual(finalTest.samples, 67)
        // Bernoulli on 8-bit values is the PyTorch example's cross-entropy, not a code length: no bits/dim.
        XCTAssertNil(finalTest.bitsPerDimension)

        for epoch in 1...3 {
            let samples = try Raster(contentsOf: "\(dir)/samples/epoch-000\(epoch).png")
            XCTAssertEqual([samples.width, samples.height], [8 * 8 + 9 * 2, 8 * 8 + 9 * 2])
            let pairs = try Raster(contentsOf: "\(dir)/reconstructions/epoch-000\(epoch).png")
            XCTAssertEqual([pairs.width, pairs.height], [8 * 8 + 9 * 2, 2 * 8 + 3 * 2])
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["batch_size"] as? Int, 32)

        // The checkpoint holds the parameters under PyTorch names and Adam's moments.
        let (tensorsPath, sidecarPath) = try CheckpointStore.resolve(dir)
        XCTAssertTrue(tensorsPath.hasSuffix("step-00000030.safetensors"))
        let file = try SafetensorsFile(contentsOf: tensorsPath)
        let names = Set(file.entries.map(\.name))
        for name in ["fc1.weight", "fc1.bias", "fc21.weight", "fc22.bias", "fc3.weight", "fc4.bias",
                     "optimizer.exp_avg.fc1.weight", "optimizer.exp_avg_sq.fc4.bias"] {
            XCTAssertTrue(names.contains(name), name)
        }
        XCTAssertFalse(names.contains { $0.contains("fc4_logvar") }, "unused heads are not saved")
        XCTAssertEqual(file["fc1.weight"]?.shape, [32, 64])
        XCTAssertEqual(file["fc1.weight"]?.scalars, trainer.model.fc1.weight.scalars)
        let sidecar = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: sidecarPath))) as? [String: Any])
        XCTAssertEqual(sidecar["step"] as? Int, 30)
        XCTAssertEqual(sidecar["world_size"] as? Int, 1)
        XCTAssertEqual((sidecar["checksums"] as? [String: String])?["fc1.weight"], tensorChecksum(file["fc1.weight"]!.scalars))
    }

    func testSameSeedSameParametersAndMaxSteps() throws {
        var c = configuration(runDirectory: try temporaryDirectory() + "/a")
        c.maxSteps = 13
        let (s1, t1) = try train(c)
        c.runDirectory = try temporaryDirectory() + "/b"
        let (_, t2) = try train(c)
        XCTAssertEqual(s1.steps, 13)
        XCTAssertEqual(t1.model, t2.model, "same seed, same parameters, bit for bit")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(c.runDirectory)/checkpoints/step-00000013.safetensors"))
        c.runDirectory = try temporaryDirectory() + "/c"
        c.seed = 2
        let (_, t3) = try train(c)
        XCTAssertNotEqual(t1.model, t3.model)
    }

    func testRefusesARunDirectoryInUse() throws {
        let dir = try temporaryDirectory() + "/run"
        var c = configuration(runDirectory: dir)
        c.maxSteps = 2
        _ = try train(c)
        XCTAssertThrowsError(try train(c)) { error in
            XCTAssertTrue("\(error)".contains("already holds a run"), "\(error)")
        }
    }

    func testNonFiniteLossStopsTraining() throws {
        var c = configuration(runDirectory: try temporaryDirectory() + "/run")
        c.learningRate = 1e30
        XCTAssertThrowsError(try train(c)) { error in
            XCTAssertTrue("\(error)".contains("non-finite"), "\(error)")
        }
    }

    func testCollectivelyReportsErrorsOnce() {
        let local = LocalCommunicator()
        struct Boom: Error {}
        XCTAssertThrowsError(try local.collectively { throw Boom() }) { error in
            let failure = error as? CollectiveFailure
            XCTAssertEqual(failure?.reporter, true)
            XCTAssertTrue(failure?.underlying is Boom)
        }
        XCTAssertEqual(try local.collectively { 7 }, 7)
    }
}
