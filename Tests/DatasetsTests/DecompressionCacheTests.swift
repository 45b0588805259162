import Foundation
import XCTest
import TestSupport
@testable import Datasets

/// Gzipped arrays decompressed once into the cache folder and mapped.
final class DecompressionCacheTests: XCTestCase {
    var dir = ""
    var cache = ""

    override func setUpWithError() throws {
        dir = try temporaryDirectory(removedAfter: self)
        cache = dir + "/cache"
        setenv("VAE_MPI_CACHE", cache, 1)
    }

    override func tearDownWithError() throws {
        unsetenv("VAE_MPI_CACHE")
    }

    let floats: [Float] = (0..<24).map { Float($0) * 0.25 - 2 }

    func writeGzippedNPY(_ values: [Float], to path: String) throws {
        try write(npyBytes(descr: "<f4", shape: [values.count / 4, 4], payload: littleEndian(values)), to: path, gzip: true)
    }

    func copies() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { !$0.contains(".") || $0.hasPrefix("x.npy.") }
            .filter { !$0.hasSuffix(".json") && !$0.hasSuffix(".lock") }.sorted()
    }

    func testAGzippedArrayIsDecompressedOnceAndMapped() throws {
        let path = dir + "/x.npy.gz"
        try writeGzippedNPY(floats, to: path)
        let set = try ImageSet.load(images: path)
        XCTAssertTrue(set.values.isMapped, "mapped from the cached copy")
        XCTAssertEqual(set.values.floats, floats)
        XCTAssertEqual(set.source, path, "messages name the file given, not the copy")
        XCTAssertEqual(copies().count, 1)
        let copy = cache + "/" + copies()[0]
        let record = try XCTUnwrap(FileManager.default.contents(atPath: copy + ".json"))
        let text = String(decoding: record, as: UTF8.self)
        XCTAssertTrue(text.contains("\"crc32\"") && text.contains("\"source_size\"") && text.contains(path), text)
        // Used again as it is: the same file (same inode).
        let inode = try FileManager.default.attributesOfItem(atPath: copy)[.systemFileNumber] as? Int
        XCTAssertEqual(try ImageSet.load(images: path).values.floats, floats)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: copy)[.systemFileNumber] as? Int, inode)
        // A damaged copy fails its CRC-32 and is made again.
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: copy))
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: copy))
        XCTAssertEqual(try ImageSet.load(images: path).values.floats, floats)
        XCTAssertEqual(try FileManager.default.contents(atPath: copy)?.last, bytes.last.map { $0 ^ 0xFF })
        // A changed source gets its own copy.
        let changed = floats.map { $0 + 1 }
        sleep(1)
        try writeGzippedNPY(changed, to: path)
        XCTAssertEqual(try ImageSet.load(images: path).values.floats, changed)
        XCTAssertEqual(copies().count, 2)
    }

    func testTruncatedDataIsAnErrorNamingTheFileAndLeavesNoCopy() throws {
        let path = dir + "/x.npy.gz"
        try writeGzippedNPY(floats, to: path)
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        bytes.removeLast(12)
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ImageSet.load(images: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("corrupt or truncated gzip data"), "\(error)")
        }
        XCTAssertEqual(copies(), [])
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.contains("partial") }
        XCTAssertEqual(leftovers, [])
    }

    func testWithoutAWritableCacheOrWithItOffTheFileIsReadWhole() throws {
        let path = dir + "/x.npy.gz"
        try writeGzippedNPY(floats, to: path)
        try Data().write(to: URL(fileURLWithPath: dir + "/blocker"))
        setenv("VAE_MPI_CACHE", dir + "/blocker/cache", 1)  // a file in the way: the folder cannot be made
        let unwritable = try ImageSet.load(images: path)
        XCTAssertFalse(unwritable.values.isMapped)
        XCTAssertEqual(unwritable.values.floats, floats)
        setenv("VAE_MPI_CACHE", "off", 1)
        XCTAssertNil(DecompressionCache.directory)
        let off = try ImageSet.load(images: path)
        XCTAssertFalse(off.values.isMapped)
        XCTAssertEqual(off.values.floats, floats)
    }
}
