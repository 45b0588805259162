import Foundation
import XCTest
import TestSupport
@testable import Artifacts
import Imaging

final class SafetensorsTests: XCTestCase {
    let file = SafetensorsFile(entries: [
        .init(name: "fc1.weight", shape: [2, 3], scalars: [1, -2, 3.5, 0, .leastNonzeroMagnitude, -7]),
        .init(name: "fc1.bias", shape: [2], scalars: [0.25, -0.5]),
        .init(name: "scalar", shape: [], scalars: [42]),
        .init(name: "empty", shape: [0, 4], scalars: []),
    ], metadata: ["format": "vae-mpi", "note": "quote \" and \\ survive"])

    func testRoundTripAndLayout() throws {
        let bytes = file.encoded()
        let headerLength = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        XCTAssertEqual(headerLength % 8, 0, "header padded to 8 bytes")
        XCTAssertEqual(bytes.count, 8 + headerLength + 4 * (6 + 2 + 1))
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes[8 ..< 8 + headerLength])) as? [String: Any])
        let w = try XCTUnwrap(header["fc1.weight"] as? [String: Any])
        XCTAssertEqual(w["dtype"] as? String, "F32")
        XCTAssertEqual(w["shape"] as? [Int], [2, 3])
        XCTAssertEqual(w["data_offsets"] as? [Int], [0, 24])
        XCTAssertEqual((header["fc1.bias"] as? [String: Any])?["data_offsets"] as? [Int], [24, 32])
        // Little-endian float32 data right after the header.
        let first = bytes[8 + headerLength ..< 8 + headerLength + 4]
        XCTAssertEqual(Array(first), [0x00, 0x00, 0x80, 0x3F])
        let parsed = try SafetensorsFile(parsing: bytes, path: "x")
        XCTAssertEqual(parsed.metadata, file.metadata)
        XCTAssertEqual(parsed.entries.map(\.name), ["fc1.weight", "fc1.bias", "scalar", "empty"])
        XCTAssertEqual(parsed.entries.map(\.scalars), file.entries.map(\.scalars))
        XCTAssertEqual(parsed["scalar"]?.shape, [])
    }

    func testDamagedFilesAreRefusedNamingTheCheck() throws {
        let bytes = file.encoded()
        func refused(_ damaged: [UInt8], _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try SafetensorsFile(parsing: damaged, path: "/ckpt.safetensors"), line: line) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("/ckpt.safetensors"), text, line: line)
                XCTAssertTrue(text.contains(fragment), "\(text) should mention \(fragment)", line: line)
            }
        }
        refused(Array(bytes.prefix(5)), "less than the 8-byte header length")
        refused(Array(bytes.dropLast(4)), "tensors cover 36 data bytes but the file holds 32")
        refused(bytes + [0, 0, 0, 0], "the file holds 40")
        var badLength = bytes
        badLength[0] = 0xFF; badLength[1] = 0xFF
        refused(badLength, "header length")
        var badJSON = bytes
        badJSON[8] = UInt8(ascii: "[")
        refused(badJSON, "header")
        let hole = SafetensorsFile(entries: [.init(name: "a", shape: [1], scalars: [1])]).encoded()
        var text = String(decoding: hole, as: UTF8.self)
        text = text.replacingOccurrences(of: "[0,4]", with: "[4,8]")
        refused(Array(text.utf8), "starts at byte 4, expected 0")
    }

    func testAtomicWriteReplacesWhole() throws {
        let dir = try temporaryDirectory()
        let path = "\(dir)/f.bin"
        try Files.writeAtomically([1, 2, 3], to: path)
        try Files.writeAtomically([4, 5], to: path)
        XCTAssertEqual(try Files.read(path), [4, 5])
        XCTAssertEqual(try Files.list(dir), ["f.bin"], "no temporary file left behind")
        XCTAssertThrowsError(try Files.writeAtomically([1], to: "\(dir)/missing/f.bin")) { error in
            XCTAssertTrue("\(error)".contains("\(dir)/missing/f.bin"), "\(error)")
        }
    }
}

final class PNGTests: XCTestCase {
    func testGrayAndRGBRoundTrip() throws {
        let gray = Raster(width: 5, height: 3, channels: 1, pixels: (0..<15).map { UInt8($0 * 17) })
        XCTAssertEqual(try Raster(pngData: try gray.pngData()), gray)
        let rgb = Raster(width: 2, height: 2, channels: 3, pixels: (0..<12).map { UInt8($0 * 20) })
        let data = try rgb.pngData()
        XCTAssertEqual(Array(data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(try Raster(pngData: data), rgb)
        XCTAssertThrowsError(try Raster(pngData: [1, 2, 3], path: "/x.png")) { error in
            XCTAssertTrue("\(error)".contains("/x.png"))
        }
    }

    func testGridLayout() {
        // Two 2×2 gray images, values 0 and 1, in 2 columns with 1 pixel of padding.
        let r = ImageGrid.raster(images: [0, 0, 0, 0, 1, 1, 1, 1], count: 2, channels: 1, height: 2, width: 2,
                                 columns: 2, padding: 1, background: 128)
        XCTAssertEqual(r.width, 7)
        XCTAssertEqual(r.height, 4)
        XCTAssertEqual(Array(r.pixels[0..<7]), [128, 128, 128, 128, 128, 128, 128])
        XCTAssertEqual(Array(r.pixels[7..<14]), [128, 0, 0, 128, 255, 255, 128])
        XCTAssertEqual(ImageGrid.toByte(.nan), 0)
        XCTAssertEqual(ImageGrid.toByte(2), 255)
        XCTAssertEqual(ImageGrid.toByte(0.5), 128)
    }
}

final class CheckpointStoreTests: XCTestCase {
    func testLatestPointerRetentionAndResolution() throws {
        let run = try temporaryDirectory()
        let store = CheckpointStore(directory: "\(run)/checkpoints")
        let tensors = SafetensorsFile(entries: [.init(name: "w", shape: [1], scalars: [1])])
        for step in [10, 20, 30, 40] {
            try store.write(step: step, tensors: tensors, sidecar: "{\"step\": \(step)}", keep: 2)
        }
        XCTAssertEqual(try store.stems(), ["step-00000030", "step-00000040"])
        XCTAssertEqual(try Files.readText(store.latestPointer), "step-00000040\n")
        let resolved = try CheckpointStore.resolve(run)
        XCTAssertEqual(resolved.tensors, "\(run)/checkpoints/step-00000040.safetensors")
        XCTAssertEqual(try CheckpointStore.resolve("\(run)/checkpoints/step-00000030.json").tensors,
                       "\(run)/checkpoints/step-00000030.safetensors")
        XCTAssertThrowsError(try CheckpointStore.resolve("\(run)/checkpoints/step-00000010.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("step-00000010.safetensors: open failed: no such file"), "\(error)")
        }
        XCTAssertThrowsError(try CheckpointStore.resolve(try temporaryDirectory())) { error in
            XCTAssertTrue("\(error)".contains("latest"), "\(error)")
        }
        // Python: "%08x" % zlib.crc32(struct.pack("<3f", 1, -2, 0.5))
        XCTAssertEqual(tensorChecksum([1, -2, 0.5]), "crc32:332b058b")
        XCTAssertEqual(tensorChecksum([1]), "crc32:aca16a6a")
    }
}

final class TensorBoardAndNPYTests: XCTestCase {
    func testCRC32CKnownAnswers() {
        // RFC 3720 appendix B.4 check values for CRC-32C.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    }

    /// Reads the TFRecord framing back and checks both CRCs of every record.
    func testEventFileFraming() throws {
        let dir = try temporaryDirectory()
        let writer = try TensorBoardWriter(directory: dir, wallTime: 1_700_000_000)
        try writer.scalars([("train/loss", 1.5), ("train/kl", 0.25)], step: 7, wallTime: 1_700_000_001)
        try writer.image("samples", png: [1, 2, 3], width: 1, height: 1, channels: 1, step: 7, wallTime: 1_700_000_002)
        try writer.sessionStart(step: 8, wallTime: 1_700_000_003)
        let bytes = try Files.read(writer.path)
        var offset = 0
        var records: [[UInt8]] = []
        func u32(_ o: Int) -> UInt32 { bytes[o..<o + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } }
        while offset < bytes.count {
            let lengthBytes = Array(bytes[offset..<offset + 8])
            let length = Int(lengthBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
            XCTAssertEqual(u32(offset + 8), CRC32C.masked(lengthBytes))
            let data = Array(bytes[offset + 12 ..< offset + 12 + length])
            XCTAssertEqual(u32(offset + 12 + length), CRC32C.masked(data))
            records.append(data)
            offset += 16 + length
        }
        XCTAssertEqual(offset, bytes.count)
        XCTAssertEqual(records.count, 4)
        XCTAssertTrue(String(decoding: records[0], as: UTF8.self).contains("brain.Event:2"))
        XCTAssertTrue(String(decoding: records[1], as: UTF8.self).contains("train/loss"))
    }

    func testNPYHeader() {
        let bytes = NPYWriter.encode([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
        XCTAssertEqual(Array(bytes[0..<8]), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "data aligned to 64 bytes")
        let header = String(decoding: bytes[10 ..< 10 + headerLength], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"))
        XCTAssertTrue(header.hasSuffix("\n"))
        XCTAssertEqual(bytes.count, 10 + headerLength + 24)
        XCTAssertEqual(Array(bytes[(10 + headerLength)...].prefix(4)), [0, 0, 0x80, 0x3F])
        let labels = NPYWriter.encode([7, -1] as [Int64], shape: [2])
        XCTAssertTrue(String(decoding: labels[10..<80], as: UTF8.self).contains("'descr': '<i8', 'fortran_order': False, 'shape': (2,)"))
    }
}

final class DirectoryLockTests: XCTestCase {
    /// Another open file description of the lock file, flocked as a second run holds it.
    private func holdByHand(_ path: String) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        return fd
    }

    func testRefusalNamesAHolderThatWritesItsNameLate() throws {
        let dir = try temporaryDirectory(removedAfter: self)
        let path = dir + "/" + DirectoryLock.fileName
        // Locked, still empty: the holder has not written its name yet (the window run-dir-race hit).
        let fd = holdByHand(path)
        defer { close(fd) }
        let writer = Thread {
            usleep(150_000)
            let text = Array("pid 4242 on host late since 2026-12-06T00:00:00Z (np 2)\n".utf8)
            _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        writer.start()
        XCTAssertThrowsError(try DirectoryLock(directory: dir, holder: "pid 1 on host me")) { error in
            XCTAssertTrue("\(error)".contains("is in use by another run (pid 4242 on host late since"), "\(error)")
        }
    }

    func testTakeOverWritesOneLineOverALongerStaleName() throws {
        let dir = try temporaryDirectory(removedAfter: self)
        let path = dir + "/" + DirectoryLock.fileName
        let stale = "pid 999999 on host a-much-longer-host-name.cluster.example since 2026-01-01T00:00:00Z (np 64)\n"
        try Files.writeAtomically(stale, to: path)
        let lock = try DirectoryLock(directory: dir, holder: "pid 7 on host b")
        XCTAssertEqual(lock.tookOverFrom, String(stale.dropLast()))
        XCTAssertEqual(try Files.readText(path), "pid 7 on host b\n")
        // A second taker reads the name while the first holds it.
        XCTAssertThrowsError(try DirectoryLock(directory: dir, holder: "pid 8 on host c")) { error in
            XCTAssertTrue("\(error)".contains("(pid 7 on host b)"), "\(error)")
        }
        lock.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
