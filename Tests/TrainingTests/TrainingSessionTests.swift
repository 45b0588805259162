import Foundation
import XCTest
import TestSupport
import Artifacts
import Collectives
import Datasets
import TensorCore
@testable import Training
import VAEModel

/// `TrainingSession`: what `vae-mpi train` does once the options are a
/// configuration — check it against the data and the checkpoint, resolve
/// what the data decides (levels, columns, statistics), refuse before
/// writing anything, train.
final class TrainingSessionTests: XCTestCase {
    let quiet = Console(rank: 0, forceQuiet: true)

    /// An IDX dataset directory of 8×8 bars (labels optional).
    func barsDirectory(labels: Bool = true) throws -> String {
        let dir = try temporaryDirectory()
        for (name, count, seed) in [("train", 150, UInt64(1)), ("t10k", 40, 2)] {
            let set = barsDataset(count: count, seed: seed)
            try Files.writeAtomically(IDXArray.encode(dimensions: [count, 8, 8], bytes: set.values.rawBytes),
                                      to: "\(dir)/\(name)-images-idx3-ubyte")
            if labels {
                try Files.writeAtomically(IDXArray.encode(dimensions: [count], bytes: set.labels!.map { UInt8($0) }),
                                          to: "\(dir)/\(name)-labels-idx1-ubyte")
            }
        }
        return dir
    }

    func configuration(data: DataSource, run: String) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.data = data
        c.runDirectory = run
        c.epochs = 1
        c.batchSize = 50
        c.architecture = .mlp(.init(hiddenSize: 16, latentSize: 2))
        c.logEvery = 100
        return c
    }

    func session(_ c: TrainingConfiguration, resuming checkpoint: Checkpoint? = nil, conditional: Bool = false) -> TrainingSession {
        TrainingSession(configuration: c, resumingFrom: checkpoint, communicator: LocalCommunicator(), conditional: conditional,
                        console: quiet)
    }

    func savedConfiguration(_ run: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(Files.readText(run + "/config.json").utf8)) as? [String: Any])
    }

    /// The error a session throws, unwrapped from the collective failure every rank agrees on.
    func refusal(_ c: TrainingConfiguration, resuming checkpoint: Checkpoint? = nil, conditional: Bool = false,
                 file: StaticString = #filePath, line: UInt = #line) -> Error? {
        var s = session(c, resuming: checkpoint, conditional: conditional)
        do {
            try s.run()
            XCTFail("the session should have refused", file: file, line: line)
            return nil
        } catch let failure as CollectiveFailure {
            return failure.underlying
        } catch {
            return error
        }
    }

    func testADiscreteLikelihoodTakesTheDataLevelsAndResumes() throws {
        let data = DataSource(directory: try barsDirectory())
        let run = try temporaryDirectory() + "/run"
        var c = configuration(data: data, run: run)
        c.architecture.likelihood = try Likelihood(named: "discretized-logistic", settings: LikelihoodSettings(mixtures: 2))
        var s = session(c)
        let summary = try s.run()
        XCTAssertEqual(summary.steps, 3)
        XCTAssertNotNil(summary.finalEvaluation?.bitsPerDimension, "a code length for 8-bit levels")
        let architecture = try XCTUnwrap(try savedConfiguration(run)["architecture"] as? [String: Any])
        let likelihood = try XCTUnwrap(architecture["likelihood"] as? [String: Any])
        XCTAssertEqual(likelihood["levels"] as? Int, 256)
        XCTAssertEqual(likelihood["mixtures"] as? Int, 2)
        // The checkpoint holds the resolved likelihood; a resume keeps it and continues.
        let checkpoint = try Checkpoint.load(run, communicator: LocalCommunicator())
        XCTAssertEqual(checkpoint.architecture.likelihood.levels, 256)
        var resumed = TrainingConfiguration(resuming: checkpoint)
        resumed.epochs = 2
        var s2 = session(resumed, resuming: checkpoint)
        XCTAssertEqual(try s2.run().steps, 6)
        // Another architecture is refused, naming what the checkpoint fixes.
        var changed = TrainingConfiguration(resuming: checkpoint)
        changed.architecture.likelihood = .bernoulli
        guard case TrainingError.changedOnResume(let what, _)? = refusal(changed, resuming: checkpoint) else {
            return XCTFail("a changed likelihood is refused")
        }
        XCTAssertTrue(what.contains("discretized-logistic"), what)
    }

    func testATableRecordsItsColumnsAndStatistics() throws {
        let dir = try temporaryDirectory()
        var rows = "a,b,label\n"
        for i in 0..<120 { rows += "\(Double(i) * 10),\(sin(Double(i))),\(i % 3)\n" }
        try Files.writeAtomically(Array(rows.utf8), to: dir + "/t.csv")
        var data = DataSource(trainImages: dir + "/t.csv", testFraction: 0.25)
        data.labelColumn = "label"
        data.standardize = true
        let run = dir + "/run"
        var c = configuration(data: data, run: run)
        c.architecture.likelihood = .gaussianLearned
        var s = session(c)
        try s.run()
        let saved = try XCTUnwrap(try savedConfiguration(run)["data"] as? [String: Any])
        XCTAssertEqual(saved["column_names"] as? [String], ["a", "b"])
        let statistics = try XCTUnwrap(saved["standardization"] as? [String: Any])
        let mean = try XCTUnwrap(statistics["mean"] as? [Double])
        // The statistics of the 90 training rows (the held-out 30 are not in them).
        let held = ImageSet.holdOut(count: 120, fraction: 0.25, seed: 1)
        XCTAssertEqual(mean[0], held.kept.map { Double($0) * 10 }.reduce(0, +) / 90, accuracy: 1e-6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/samples"), "no pictures of table rows")
        // A conv model needs images.
        var conv = configuration(data: data, run: dir + "/conv")
        conv.architecture = .conv(.init(channels: [4], latentSize: 2))
        guard case TrainingError.unsupportedImages(_, _, _, .images)? = refusal(conv) else {
            return XCTFail("the conv family refuses rows of a table")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/conv/config.json"))
    }

    func testRefusalsComeBeforeAnythingIsWritten() throws {
        let dir = try barsDirectory(labels: false)
        let run = try temporaryDirectory() + "/run"
        var bad = configuration(data: DataSource(directory: dir), run: run)
        bad.epochs = 0
        XCTAssertEqual(refusal(bad) as? InvalidSetting, InvalidSetting("epochs", "must be at least 1 (got 0)"))
        bad = configuration(data: DataSource(directory: dir), run: run)
        bad.architecture.likelihood = .gaussian(sigma: 0)
        XCTAssertEqual(refusal(bad) as? InvalidSetting, InvalidSetting("architecture.likelihood.sigma", "must be positive (got 0.0)"))
        // A conditional model needs labels.
        guard case TrainingError.conditionalWithoutLabels? = refusal(configuration(data: DataSource(directory: dir), run: run),
                                                                     conditional: true) else {
            return XCTFail("a conditional VAE without labels is refused")
        }
        // 8-bit data with a likelihood of another number of levels: K from the data must match a given one.
        var levels = configuration(data: DataSource(directory: dir), run: run)
        levels.architecture.likelihood = Likelihood(BetaBinomialLikelihood(levels: 16))
        guard case LikelihoodError.unsuitableData(_, _, let rule)? = refusal(levels) else {
            return XCTFail("16 levels for 8-bit data are refused")
        }
        XCTAssertEqual(rule, "16 levels; the data has 256")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run), "nothing written")
    }

    func testUnlabelledDataShowsNoClassNames() throws {
        // The default source names Fashion-MNIST's classes; data without labels must not take them.
        var data = DataSource.debianFashionMNIST
        data.directory = try barsDirectory(labels: false)
        let run = try temporaryDirectory() + "/run"
        var s = session(configuration(data: data, run: run))
        try s.run()
        let saved = try XCTUnwrap(try savedConfiguration(run)["data"] as? [String: Any])
        XCTAssertNil(saved["class_names"], "\(saved)")
    }
}
