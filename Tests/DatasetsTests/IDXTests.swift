import CZlib
import Foundation
import XCTest
import TensorCore
import TestSupport
@testable import Datasets

func write(_ bytes: [UInt8], to path: String, gzip: Bool = false) throws {
    if gzip {
        let file = try XCTUnwrap(gzopen(path, "wb"))
        bytes.withUnsafeBytes { _ = gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        gzclose(file)
    } else {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

final class IDXTests: XCTestCase {
    let images: [UInt8] = (0..<(5 * 3 * 4)).map { UInt8($0 * 7 % 256) }

    func testReadsRawAndGzip() throws {
        let dir = try temporaryDirectory()
        let encoded = IDXArray.encode(dimensions: [5, 3, 4], bytes: images)
        try write(encoded, to: "\(dir)/a", gzip: false)
        try write(encoded, to: "\(dir)/a.gz", gzip: true)
        for path in ["\(dir)/a", "\(dir)/a.gz"] {
            let array = try IDXArray(contentsOf: path)
            XCTAssertEqual(array.dimensions, [5, 3, 4])
            XCTAssertEqual(array.bytes, images)
        }
        let set = try ImageSet.load(images: "\(dir)/a.gz")
        XCTAssertEqual(set.shape, ImageShape(channels: 1, height: 3, width: 4))
        XCTAssertEqual(set.count, 5)
        let batch = set.batch([4, 0])
        XCTAssertEqual(batch.shape, [2, 12])
        XCTAssertEqual(batch.scalars[0], Float(images[48]) / 255, accuracy: 1e-7)
        XCTAssertEqual(batch.scalars[12], Float(images[0]) / 255, accuracy: 1e-7)
    }

    func testLabelsMustMatchImages() throws {
        let dir = try temporaryDirectory()
        try write(IDXArray.encode(dimensions: [5, 3, 4], bytes: images), to: "\(dir)/img")
        try write(IDXArray.encode(dimensions: [5], bytes: [1, 2, 3, 4, 5]), to: "\(dir)/lab")
        try write(IDXArray.encode(dimensions: [4], bytes: [1, 2, 3, 4]), to: "\(dir)/short")
        let set = try ImageSet.load(images: "\(dir)/img", labels: "\(dir)/lab")
        XCTAssertEqual(set.labels, [1, 2, 3, 4, 5])
        XCTAssertEqual(set.selecting([3, 1]).labels, [4, 2])
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/img", labels: "\(dir)/short")) { error in
            XCTAssertEqual(error as? DatasetError,
                           .countMismatch(images: "\(dir)/img", imageCount: 5, labels: "\(dir)/short", labelCount: 4))
            XCTAssertTrue("\(error)".contains("\(dir)/short has 4 labels"))
        }
    }

    func testMalformedFilesAreRefusedWithTheirPath() throws {
        let dir = try temporaryDirectory()
        let good = IDXArray.encode(dimensions: [5, 3, 4], bytes: images)
        func expectError(_ bytes: [UInt8], gzip: Bool = false, _ check: (DatasetError, String) -> Void,
                         line: UInt = #line) throws {
            let path = "\(dir)/case-\(line)" + (gzip ? ".gz" : "")
            try write(bytes, to: path, gzip: gzip)
            XCTAssertThrowsError(try IDXArray(contentsOf: path), line: line) { error in
                guard let e = error as? DatasetError else { return XCTFail("\(error)", line: line) }
                XCTAssertTrue(e.description.hasPrefix(path), "message names the file: \(e)", line: line)
                check(e, path)
            }
        }
        try expectError([0x12, 0x34, 0x08, 0x03] + good.dropFirst(4)) { e, p in
            XCTAssertEqual(e, .badMagic(path: p, found: [0x12, 0x34, 0x08, 0x03]))
        }
        try expectError([0, 0, 0x0D, 3] + good.dropFirst(4)) { e, p in
            XCTAssertEqual(e, .unsupportedElementType(path: p, code: 0x0D))
        }
        try expectError(Array(good.dropLast(7))) { e, p in
            XCTAssertEqual(e, .truncated(path: p, expectedBytes: good.count, foundBytes: good.count - 7))
        }
        try expectError(good + [1, 2]) { e, p in
            XCTAssertEqual(e, .trailingBytes(path: p, expectedBytes: good.count, foundBytes: good.count + 2))
        }
        try expectError(Array(good.prefix(9))) { e, p in
            XCTAssertEqual(e, .truncated(path: p, expectedBytes: 16, foundBytes: 9))
        }
        try expectError([0, 0]) { e, p in
            XCTAssertEqual(e, .truncated(path: p, expectedBytes: 4, foundBytes: 2))
        }
        try expectError(Array(good.dropLast(7)), gzip: true) { e, p in
            XCTAssertEqual(e, .truncated(path: p, expectedBytes: good.count, foundBytes: good.count - 7))
        }
    }

    func testCorruptGzipIsAnError() throws {
        let dir = try temporaryDirectory()
        let payload = IDXArray.encode(dimensions: [200, 10, 10], bytes: (0..<20_000).map { UInt8($0 % 251) })
        try write(payload, to: "\(dir)/full.gz", gzip: true)
        let compressed = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/full.gz"))
        try write(Array(compressed.prefix(compressed.count / 2)), to: "\(dir)/cut.gz")
        XCTAssertThrowsError(try IDXArray(contentsOf: "\(dir)/cut.gz")) { error in
            XCTAssertTrue("\(error)".contains("\(dir)/cut.gz"), "\(error)")
        }
    }

    func testMissingFilesAndDirectories() throws {
        let dir = try temporaryDirectory()
        XCTAssertThrowsError(try IDXArray(contentsOf: "\(dir)/nope")) { error in
            XCTAssertEqual(error as? DatasetError, .notFound(path: "\(dir)/nope", hint: ""))
        }
        XCTAssertThrowsError(try DatasetDirectory("\(dir)/absent")) { error in
            XCTAssertTrue("\(error)".contains("\(dir)/absent: no such file"), "\(error)")
        }
        XCTAssertThrowsError(try DatasetDirectory(dir)) { error in
            XCTAssertTrue("\(error)".contains("train-images-idx3-ubyte"), "\(error)")
        }
        try write(IDXArray.encode(dimensions: [5, 3, 4], bytes: images), to: "\(dir)/train-images-idx3-ubyte.gz", gzip: true)
        try write(IDXArray.encode(dimensions: [5, 3, 4], bytes: images), to: "\(dir)/t10k-images-idx3-ubyte")
        let found = try DatasetDirectory(dir)
        XCTAssertEqual(found.trainImages, "\(dir)/train-images-idx3-ubyte.gz")
        XCTAssertEqual(found.testImages, "\(dir)/t10k-images-idx3-ubyte")
        XCTAssertNil(found.trainLabels)
    }

    func testDebianHintForTheDefaultDirectory() {
        if FileManager.default.fileExists(atPath: DatasetDirectory.debianFashionMNIST) { return }
        XCTAssertThrowsError(try DatasetDirectory(DatasetDirectory.debianFashionMNIST)) { error in
            XCTAssertTrue("\(error)".contains("apt-get install dataset-fashion-mnist"))
        }
    }
}
