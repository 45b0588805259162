import Foundation
import XCTest
import TensorCore
import TestSupport
@testable import Datasets

/// A data source as a value: a directory, explicit files over it, a held-out
/// fraction, and the class names it carries.
final class DataSourceTests: XCTestCase {
    func makeDirectory(train: Int = 6, test: Int? = 3, height: Int = 3, width: Int = 4) throws -> String {
        let dir = try temporaryDirectory()
        let d = height * width
        try write(IDXArray.encode(dimensions: [train, height, width], bytes: (0..<(train * d)).map { UInt8($0 % 251) }),
                  to: "\(dir)/train-images-idx3-ubyte.gz", gzip: true)
        try write(IDXArray.encode(dimensions: [train], bytes: (0..<train).map { UInt8($0 % 3) }),
                  to: "\(dir)/train-labels-idx1-ubyte")
        if let test {
            try write(IDXArray.encode(dimensions: [test, height, width], bytes: [UInt8](repeating: 9, count: test * d)),
                      to: "\(dir)/t10k-images-idx3-ubyte")
        }
        return dir
    }

    func testDirectoryWithClassNames() throws {
        let dir = try makeDirectory()
        let splits = try DataSource(directory: dir, classNames: ["a", "b", "c"]).load(seed: 1)
        XCTAssertEqual(splits.train.count, 6)
        XCTAssertEqual(splits.test.count, 3)
        XCTAssertEqual(splits.train.labels, [0, 1, 2, 0, 1, 2])
        XCTAssertNil(splits.test.labels)
        XCTAssertEqual(splits.classNames, ["a", "b", "c"])
        XCTAssertFalse(splits.testIsHeldOut)
        XCTAssertEqual(try DataSource(directory: dir).load(.test, seed: 1).count, 3)
        XCTAssertEqual(DataSource.debianFashionMNIST.classNames?.count, 10)
    }

    func testExplicitFilesOverrideTheDirectory() throws {
        let dir = try makeDirectory(), other = try makeDirectory(train: 4, test: 2)
        let splits = try DataSource(directory: dir, testImages: "\(other)/t10k-images-idx3-ubyte").load(seed: 1)
        XCTAssertEqual([splits.train.count, splits.test.count], [6, 2])
        XCTAssertEqual(splits.test.source, "\(other)/t10k-images-idx3-ubyte")
        // A training file alone: the directory is not read.
        let files = DataSource(directory: "\(dir)/absent", trainImages: "\(other)/train-images-idx3-ubyte.gz",
                               testFraction: 0.5)
        XCTAssertEqual(try files.load(seed: 1).train.count, 2)
    }

    func testHeldOutFraction() throws {
        let dir = try makeDirectory(train: 20, test: nil)
        let source = DataSource(directory: dir, testFraction: 0.25)
        let a = try source.load(seed: 3), b = try source.load(seed: 3), c = try source.load(seed: 4)
        XCTAssertEqual([a.train.count, a.test.count], [15, 5])
        XCTAssertTrue(a.testIsHeldOut)
        XCTAssertEqual(a.test.labels, b.test.labels, "seeded")
        XCTAssertNotEqual(a.test.labels, c.test.labels)
    }

    func testErrors() throws {
        let dir = try makeDirectory(test: nil)
        XCTAssertThrowsError(try DataSource(directory: dir).load(seed: 1)) {
            XCTAssertEqual($0 as? DataSourceError, .noTestImages(trainFile: "\(dir)/train-images-idx3-ubyte.gz"))
        }
        let withTest = try makeDirectory()
        XCTAssertThrowsError(try DataSource(directory: withTest, testFraction: 0.1).load(seed: 1)) {
            XCTAssertEqual($0 as? DataSourceError,
                           .testFractionWithTestFile(testFile: "\(withTest)/t10k-images-idx3-ubyte", fraction: 0.1))
        }
        XCTAssertThrowsError(try DataSource().load(seed: 1)) {
            XCTAssertEqual($0 as? DataSourceError, .noTrainingImages)
        }
        let wide = try makeDirectory(width: 5)
        XCTAssertThrowsError(try DataSource(directory: dir, testImages: "\(wide)/t10k-images-idx3-ubyte").load(seed: 1)) {
            XCTAssertTrue("\($0)".contains("test samples are 1×3×5 but training samples"), "\($0)")
        }
    }
}
