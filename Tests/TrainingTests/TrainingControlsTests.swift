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

/// One rank, counting the reductions of gradients (Float allreduces).
final class CountingCommunicator: Communicator {
    let inner = LocalCommunicator()
    var floatReductions = 0
    var rank: Int { 0 }
    var size: Int { 1 }
    var hostName: String { inner.hostName }
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { floatReductions += 1 }
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    func reduceScatterSum(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
                          counts: [Int]) throws {
        floatReductions += 1
        try inner.reduceScatterSum(input, into: output, counts: counts)
    }
    func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
    func alltoall(_ send: UnsafeRawBufferPointer, _ receive: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {
        try inner.alltoall(send, receive, blockBytes: blockBytes)
    }
    func allgather(_ buffer: UnsafeMutableRawBufferPointer, blockBytes: Int) throws {}
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    func allGather(_ value: UInt64) throws -> [UInt64] { [value] }
    func barrier() throws {}
    func abort(exitCode: Int32) -> Never { exit(exitCode) }
}

final class LearningRateScheduleTests: XCTestCase {
    func testEachScheduleAgainstItsFormula() {
        let base = 2e-3
        let constant = LearningRateSchedule()
        XCTAssertEqual(constant.rate(base: base, step: 1, epoch: 1, totalSteps: 100), base)
        XCTAssertEqual(constant.rate(base: base, step: 100, epoch: 9, totalSteps: 100), base)
        // Warm-up: base · t / W for t ≤ W.
        let warm = LearningRateSchedule(warmupSteps: 10)
        XCTAssertEqual(warm.rate(base: base, step: 1, epoch: 1, totalSteps: 100), base / 10, accuracy: 1e-18)
        XCTAssertEqual(warm.rate(base: base, step: 5, epoch: 1, totalSteps: 100), base / 2, accuracy: 1e-18)
        XCTAssertEqual(warm.rate(base: base, step: 10, epoch: 1, totalSteps: 100), base)
        XCTAssertEqual(warm.rate(base: base, step: 11, epoch: 1, totalSteps: 100), base)
        // Cosine after a warm-up of 20 over 120 steps: ½(1 + cos(π (t − 1 − 20) / 100)).
        let cosine = LearningRateSchedule(kind: .cosine, warmupSteps: 20)
        for t in [21, 22, 46, 71, 96, 120] {
            let expected = base * 0.5 * (1 + cos(Double.pi * Double(t - 21) / 100))
            XCTAssertEqual(cosine.rate(base: base, step: t, epoch: 1, totalSteps: 120), expected, accuracy: 1e-15, "step \(t)")
        }
        XCTAssertEqual(cosine.rate(base: base, step: 71, epoch: 1, totalSteps: 120), base / 2, accuracy: 1e-15)
        XCTAssertEqual(cosine.rate(base: base, step: 500, epoch: 1, totalSteps: 120), 0, accuracy: 1e-15, "past the end: 0")
        // Step: × γ after each decay epoch completed (PyTorch's MultiStepLR).
        let step = LearningRateSchedule(kind: .step, decayEpochs: [2, 4], decay: 0.5)
        XCTAssertEqual(step.rate(base: base, step: 1, epoch: 1, totalSteps: 100), base)
        XCTAssertEqual(step.rate(base: base, step: 30, epoch: 2, totalSteps: 100), base)
        XCTAssertEqual(step.rate(base: base, step: 31, epoch: 3, totalSteps: 100), base * 0.5)
        XCTAssertEqual(step.rate(base: base, step: 61, epoch: 5, totalSteps: 100), base * 0.25)
        XCTAssertEqual(LearningRateSchedule(kind: .step, warmupSteps: 5, decayEpochs: [1], decay: 0.1)
            .rate(base: base, step: 3, epoch: 2, totalSteps: 100), base * 3 / 5, "the warm-up comes first")
    }
}

final class AccumulationAndBestTests: XCTestCase {
    func configuration(_ dir: String) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.runDirectory = dir
        c.epochs = 2
        c.batchSize = 64
        c.architecture = .mlp(.init(hiddenSize: 32, latentSize: 4))
        c.learningRate = 3e-3
        c.logEvery = 5
        return c
    }

    func train(_ c: TrainingConfiguration, communicator: Communicator = LocalCommunicator()) throws
        -> (TrainingSummary, Trainer<MLPVAE>) {
        let data = DataSplits(train: barsDataset(count: 301, seed: 1), test: barsDataset(count: 67, seed: 2))
        guard case .mlp(let options) = c.architecture else { throw XCTSkip("an MLP configuration") }
        let trainer = try Trainer(options, configuration: c, data: data, communicator: communicator,
                                  console: Console(rank: 0, forceQuiet: true), backend: cpu)
        return (try trainer.run(), trainer)
    }

    /// K micro-batches give the update of one batch of the same size, up to
    /// the order of float sums, with one reduction per optimizer step.
    func testAccumulationEqualsOneBigBatch() throws {
        for freeBits in [0.0, 0.5] {
            var c = configuration(try temporaryDirectory() + "/one")
            c.kl.freeBits = freeBits
            let counting = CountingCommunicator()
            let (one, big) = try train(c, communicator: counting)
            let reductionsPerStep = counting.floatReductions
            for k in [2, 4, 7] {
                var a = c
                a.accumulate = k
                a.runDirectory = try temporaryDirectory() + "/acc\(k)"
                let counter = CountingCommunicator()
                let (summary, accumulated) = try train(a, communicator: counter)
                XCTAssertEqual(summary.steps, one.steps)
                XCTAssertEqual(counter.floatReductions, reductionsPerStep,
                               "k \(k): one gradient reduction per optimizer step (\(one.steps) steps)")
                let p = big.model.flattened(layout: big.layout), q = accumulated.model.flattened(layout: accumulated.layout)
                var worst: Float = 0
                for i in p.indices { worst = max(worst, abs(p[i] - q[i]) / max(abs(p[i]), 1e-2)) }
                print("accumulate \(k), free bits \(freeBits): largest relative parameter difference \(worst)")
                // Float sums in another order, through 10 Adam steps: measured ≤ 1.4e-5; bound 1e-4.
                XCTAssertLessThan(worst, 1e-4, "k \(k), free bits \(freeBits): largest relative difference \(worst)")
                XCTAssertEqual(summary.finalEvaluation!.loss, one.finalEvaluation!.loss, accuracy: 1e-3 * one.finalEvaluation!.loss)
            }
            // Free bits add one small reduction per step; without them it is exactly one.
            XCTAssertEqual(reductionsPerStep, one.steps * (freeBits > 0 ? 2 : 1))
        }
    }

    func testBestCheckpointSurvivesRetentionAndEarlyStopStops() throws {
        var c = configuration(try temporaryDirectory() + "/best")
        c.epochs = 12
        c.learningRate = 0.05     // noisy: the test loss goes up and down
        c.keepBest = true
        c.keepCheckpoints = 1
        c.earlyStop = 2
        let (summary, _) = try train(c)
        let metrics = try Files.readText("\(c.runDirectory)/metrics.jsonl").split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let losses = metrics.filter { $0["type"] as? String == "eval" }.map { $0["test_loss"] as! Double }
        // Where early stopping should end the run, from the losses alone.
        var (best, since, stopAt) = (Double.infinity, 0, losses.count)
        for (i, loss) in losses.enumerated() {
            if loss < best { (best, since) = (loss, 0) } else { since += 1 }
            if since >= 2 { stopAt = i + 1; break }
        }
        XCTAssertEqual(losses.count, stopAt, "stopped after the evaluations that made 2 without improvement")
        XCTAssertNotNil(summary.earlyStop, "this run is noisy enough to stop early: \(losses)")
        XCTAssertEqual(metrics.filter { $0["type"] as? String == "early_stop" }.count, summary.earlyStop == nil ? 0 : 1)
        let store = CheckpointStore(directory: c.runDirectory + "/checkpoints")
        let bestIndex = losses.firstIndex(of: losses.min()!)!
        XCTAssertEqual(store.bestStem(), CheckpointStore.stem(step: (bestIndex + 1) * 5))
        let stems = try store.stems()
        XCTAssertTrue(stems.contains(store.bestStem()!), "retention kept the best: \(stems)")
        XCTAssertLessThanOrEqual(stems.count, 2)
        let resolved = try CheckpointStore.resolve(c.runDirectory + "/checkpoints/best")
        XCTAssertTrue(resolved.tensors.hasSuffix(store.bestStem()! + ".safetensors"))
        let sidecar = try Checkpoint.load(c.runDirectory + "/checkpoints/best", communicator: LocalCommunicator()).sidecar
        XCTAssertEqual(sidecar.progress?.bestTestLoss ?? 0, losses.min()!, accuracy: 1e-9)
    }
}
