import Foundation
import XCTest
import TensorCore
import TestSupport
@testable import Datasets

/// Builds .npy bytes by hand (the format's documented layout), independent
/// of the reader under test.
func npyBytes(descr: String, shape: [Int], payload: [UInt8], fortran: Bool = false, version: UInt8 = 1) -> [UInt8] {
    let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(dims), }"
    let prefix = version == 1 ? 10 : 12
    header += String(repeating: " ", count: (64 - (prefix + header.utf8.count + 1) % 64) % 64) + "\n"
    let n = header.utf8.count
    let length: [UInt8] = version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)]
        : [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
    return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + Array(header.utf8) + payload
}

func littleEndian(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }

final class NPYTests: XCTestCase {
    func testImageLayoutsAndTypes() throws {
        let dir = try temporaryDirectory()
        // uint8 N×H×W
        try write(npyBytes(descr: "|u1", shape: [3, 2, 4], payload: (0..<24).map(UInt8.init)), to: "\(dir)/a.npy")
        let a = try ImageSet.load(images: "\(dir)/a.npy")
        XCTAssertEqual(a.shape, ImageShape(channels: 1, height: 2, width: 4))
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(a.batch([2]).scalars.first, 16 / 255)
        // float32 N×C×H×W, gzipped, version 2.0 header
        let floats: [Float] = (0..<(2 * 3 * 2 * 2)).map { Float($0) * 0.5 - 3 }
        try write(npyBytes(descr: "<f4", shape: [2, 3, 2, 2], payload: littleEndian(floats), version: 2), to: "\(dir)/b.npy.gz", gzip: true)
        let b = try ImageSet.load(images: "\(dir)/b.npy.gz")
        XCTAssertEqual(b.shape, ImageShape(channels: 3, height: 2, width: 2))
        XCTAssertEqual(b.batch([0, 1]).scalars, floats)
        XCTAssertEqual(b.valueRange, -3 ... 8.5)
        // N×D: a perfect square is shown square, anything else as a row
        try write(npyBytes(descr: "<f4", shape: [2, 9], payload: littleEndian([Float](repeating: 0.5, count: 18))), to: "\(dir)/c.npy")
        XCTAssertEqual(try ImageSet.load(images: "\(dir)/c.npy").shape, ImageShape(channels: 1, height: 3, width: 3))
        try write(npyBytes(descr: "<f4", shape: [2, 5], payload: littleEndian([Float](repeating: 0.5, count: 10))), to: "\(dir)/d.npy")
        XCTAssertEqual(try ImageSet.load(images: "\(dir)/d.npy").shape, ImageShape(channels: 1, height: 1, width: 5))
        // float64 and big-endian float32
        let doubles: [UInt8] = [0.25, -1.5].flatMap { (v: Double) in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
        try write(npyBytes(descr: "<f8", shape: [1, 2], payload: doubles), to: "\(dir)/e.npy")
        XCTAssertEqual(try NPYArray(contentsOf: "\(dir)/e.npy").elements, .floats([0.25, -1.5]))
        let big: [UInt8] = [Float(2), 3].flatMap { withUnsafeBytes(of: $0.bitPattern.bigEndian, Array.init) }
        try write(npyBytes(descr: ">f4", shape: [2], payload: big), to: "\(dir)/f.npy")
        XCTAssertEqual(try NPYArray(contentsOf: "\(dir)/f.npy").elements, .floats([2, 3]))
    }

    func testLabels() throws {
        let dir = try temporaryDirectory()
        try write(npyBytes(descr: "|u1", shape: [3, 2, 2], payload: [UInt8](repeating: 9, count: 12)), to: "\(dir)/x.npy")
        let labels: [UInt8] = [7, -2, 300].flatMap { (v: Int64) in withUnsafeBytes(of: v.littleEndian, Array.init) }
        try write(npyBytes(descr: "<i8", shape: [3], payload: labels), to: "\(dir)/y.npy")
        XCTAssertEqual(try ImageSet.load(images: "\(dir)/x.npy", labels: "\(dir)/y.npy").labels, [7, -2, 300])
        try write(npyBytes(descr: "<i8", shape: [2], payload: Array(labels.prefix(16))), to: "\(dir)/short.npy")
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/x.npy", labels: "\(dir)/short.npy")) { error in
            XCTAssertTrue("\(error)".contains("has 2 labels but \(dir)/x.npy has 3 images"), "\(error)")
        }
    }

    func testMalformedFilesAreRefusedWithTheirPath() throws {
        let dir = try temporaryDirectory()
        func refused(_ bytes: [UInt8], _ fragment: String, line: UInt = #line) throws {
            let path = "\(dir)/bad-\(line).npy"
            try write(bytes, to: path)
            XCTAssertThrowsError(try ImageSet.load(images: path), line: line) { error in
                XCTAssertTrue("\(error)".hasPrefix(path), "\(error)", line: line)
                XCTAssertTrue("\(error)".contains(fragment), "\(error) should contain \(fragment)", line: line)
            }
        }
        let good = npyBytes(descr: "<f4", shape: [2, 2, 2], payload: littleEndian([Float](repeating: 0.5, count: 8)))
        try refused(Array(good.dropLast(4)), "truncated")
        try refused(good + [0, 0, 0, 0], "unexpected bytes")
        try refused(npyBytes(descr: "<f4", shape: [2, 2, 2], payload: littleEndian([Float](repeating: 0, count: 8)), fortran: true),
                    "Fortran-order")
        try refused(npyBytes(descr: "<c8", shape: [1, 1, 1], payload: [UInt8](repeating: 0, count: 8)), "dtype '<c8' is not supported")
        try refused(npyBytes(descr: "<i4", shape: [1, 1, 1], payload: [0, 0, 0, 0]), "integer samples (<i4) need their number of levels")
        try refused(npyBytes(descr: "<f4", shape: [2, 1, 1, 1, 1], payload: littleEndian([1, 2])), "need 2 (N×D), 3 (N×H×W) or 4")
    }

    func testHoldOutAndValueChecks() throws {
        let pixels = (0..<(50 * 4)).map { Float($0 % 7) / 6 }
        let set = ImageSet(shape: ImageShape(channels: 1, height: 2, width: 2), values: SampleValues(floats: pixels),
                           labels: (0..<50).map(Int32.init), source: "/data/x.npy")
        let (train, test) = set.holdingOut(fraction: 0.2, seed: 3)
        XCTAssertEqual(test.count, 10)
        XCTAssertEqual(train.count, 40)
        XCTAssertEqual(Set(train.labels! + test.labels!), Set(0..<50), "a partition")
        XCTAssertEqual(test.labels, set.holdingOut(fraction: 0.2, seed: 3).test.labels, "seeded")
        XCTAssertNotEqual(test.labels, set.holdingOut(fraction: 0.2, seed: 4).test.labels)
        XCTAssertNoThrow(try set.validateFinite())
        XCTAssertEqual(set.valueRange, 0...1)
        XCTAssertNil(set.levels, "floats are real values")
        let wide = ImageSet(shape: set.shape, values: SampleValues(floats: pixels.map { $0 * 2 - 0.5 }), source: "/data/w.npy")
        XCTAssertEqual(wide.valueRange, -0.5...1.5)
        var withNaN = pixels
        withNaN[9] = .nan
        let missing = ImageSet(shape: set.shape, values: SampleValues(floats: withNaN), source: "/data/n.npy")
        XCTAssertNoThrow(try missing.validateFinite(), "NaN is a missing value")
        XCTAssertEqual(missing.missingCount, 1)
        XCTAssertEqual(missing.observed?[9], 0)
        withNaN[9] = .infinity
        let infinite = ImageSet(shape: set.shape, values: SampleValues(floats: withNaN), source: "/data/i.npy")
        XCTAssertThrowsError(try infinite.validateFinite()) { error in
            XCTAssertTrue("\(error)".contains("value inf at sample 2, element 1 is not finite"), "\(error)")
        }
    }
}
