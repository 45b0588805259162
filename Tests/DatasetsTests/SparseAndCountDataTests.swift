import Foundation
import XCTest
import TensorCore
import TestSupport
@testable import Datasets

/// Sparse rows (CSR), interaction logs and Matrix Market files.
final class SparseAndCountDataTests: XCTestCase {
    func temporaryFolder() throws -> String { try temporaryDirectory(removedAfter: self) }

    /// Triplets in any order become sorted rows; a repeated cell adds up;
    /// every read (a row, a range across rows, a selection) matches the dense matrix.
    func testSparseRowsReadAsTheDenseMatrix() {
        let rows = SparseRows(rows: 3, width: 4, triplets: [(2, 3, 5), (0, 2, 1), (0, 0, 2), (2, 3, 1), (2, 0, 7)])
        XCTAssertEqual(rows.rowStarts, [0, 2, 2, 4])
        XCTAssertEqual(rows.columns, [0, 2, 0, 3])
        XCTAssertEqual(rows.values, [2, 1, 7, 6])
        let values = SampleValues(sparse: rows)
        let dense: [Float] = [2, 0, 1, 0, 0, 0, 0, 0, 7, 0, 0, 6]
        XCTAssertEqual(values.floats, dense)
        var part = [Float](repeating: -1, count: 7)
        part.withUnsafeMutableBufferPointer { values.convert(3, 7, into: $0.baseAddress!, scale: 0.5) }
        XCTAssertEqual(part, dense[3..<10].map { $0 * 0.5 })
        XCTAssertEqual(values.selecting(rows: [2, 0], width: 4).floats, Array(dense[8..<12] + dense[0..<4]))
        XCTAssertEqual(values.range, 0...7)
        XCTAssertTrue(rows.isIntegral)
        let set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: 4), values: values)
        XCTAssertEqual(set.batch([2, 1]).scalars, Array(dense[8..<12] + dense[4..<8]))
        XCTAssertNil(set.observed)
        // The encoder reads the normalised rows; a likelihood of counts scores the counts themselves.
        var normalised = set
        normalised.inputNormalization = .l2
        XCTAssertEqual(normalised.batch([2], as: .levels).scalars, [7, 0, 0, 6])
        let l2 = normalised.batch([2]).scalars, norm = Float((49.0 + 36.0).squareRoot())
        for (got, want) in zip(l2, [7 / norm, 0, 0, 6 / norm]) { XCTAssertEqual(got, want, accuracy: 1e-6) }
        normalised.inputNormalization = .log1p
        XCTAssertEqual(normalised.batch([0]).scalars[0], Float(Foundation.log1p(2.0)), accuracy: 1e-6)
        XCTAssertEqual(normalised.batch([0], as: .levels).scalars, [2, 0, 1, 0])
    }

    func testInteractionLogs() throws {
        let dir = try temporaryFolder()
        let log = "userId,movieId,rating\nu7,m3,5\nu2,m3,2\nu7,m9,4\nu2,m1,4.5\nu7,m3,4\n"
        try log.write(toFile: dir + "/r.csv", atomically: true, encoding: .utf8)
        let columns = InteractionColumns(user: "userId", item: "movieId", rating: "rating", minRating: 4)
        let (clicks, unknown) = try ImageSet.loadInteractions(dir + "/r.csv", columns: columns)
        XCTAssertEqual(unknown, 0)
        XCTAssertEqual(clicks.rowNames, ["u7", "u2"])
        XCTAssertEqual(clicks.columnNames, ["m3", "m9", "m1"])
        // u7 rated m3 twice: one click; u2's rating 2 is not a click.
        XCTAssertEqual(clicks.values.floats, [1, 1, 0, 0, 0, 1])
        var counts = columns
        counts.rating = nil
        counts.minRating = nil
        XCTAssertEqual(try ImageSet.loadInteractions(dir + "/r.csv", columns: counts).set.values.floats, [2, 1, 0, 1, 0, 1])
        // A test log keeps the training items' columns; others are counted and left out.
        try "userId,movieId,rating\nu5,m1,5\nu5,m42,5\n".write(toFile: dir + "/t.csv", atomically: true, encoding: .utf8)
        let test = try ImageSet.loadInteractions(dir + "/t.csv", columns: columns, items: ["m3", "m9", "m1"])
        XCTAssertEqual(test.set.values.floats, [0, 0, 1])
        XCTAssertEqual(test.unknownItems, 1)
        XCTAssertThrowsError(try ImageSet.loadInteractions(dir + "/r.csv", columns: InteractionColumns(user: "user", item: "movieId"))) {
            XCTAssertTrue("\($0)".contains("has no column \"user\" (--user-column)"), "\($0)")
        }
    }

    /// A 10x-style matrix (genes × cells, gzipped names beside it) read with
    /// and without --transpose.
    func testMatrixMarket() throws {
        let dir = try temporaryFolder()
        let text = "%%MatrixMarket matrix coordinate integer general\n% a comment\n3 2 3\n1 1 4\n3 1 1\n2 2 9\n"
        try text.write(toFile: dir + "/matrix.mtx", atomically: true, encoding: .utf8)
        try "G1\tA\nG2\tB\nG3\tC\n".write(toFile: dir + "/features.tsv", atomically: true, encoding: .utf8)
        try "AAC-1\nGGT-1\n".write(toFile: dir + "/barcodes.tsv", atomically: true, encoding: .utf8)
        let cells = try ImageSet.loadMatrixMarket(dir + "/matrix.mtx", transpose: true)
        XCTAssertEqual(cells.count, 2)
        XCTAssertEqual(cells.columnNames, ["G1", "G2", "G3"])
        XCTAssertEqual(cells.rowNames, ["AAC-1", "GGT-1"])
        XCTAssertEqual(cells.values.floats, [4, 0, 1, 0, 9, 0])
        // Without --transpose the names no longer fit their axes: refused, naming the file.
        XCTAssertThrowsError(try ImageSet.loadMatrixMarket(dir + "/matrix.mtx", transpose: false)) {
            XCTAssertTrue("\($0)".contains("features.tsv: names 3 entries; \(dir)/matrix.mtx has 2 on that axis"), "\($0)")
        }
        try (text.replacingOccurrences(of: "3 2 3", with: "3 2 4")).write(toFile: dir + "/short.mtx", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ImageSet.loadMatrixMarket(dir + "/short.mtx", transpose: true)) {
            XCTAssertTrue("\($0)".contains("holds 3 entries, its size line says 4"), "\($0)")
        }
        try "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n".write(toFile: dir + "/dense.mtx", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ImageSet.loadMatrixMarket(dir + "/dense.mtx", transpose: false)) {
            XCTAssertTrue("\($0)".contains("only sparse (coordinate) matrices are read"), "\($0)")
        }
    }

    /// Count likelihoods read integer arrays without levels, exactly.
    func testIntegerArraysAsCounts() throws {
        var payload: [UInt8] = []
        for v: Int64 in [0, 3, 70000, 1] { withUnsafeBytes(of: v.littleEndian) { payload += $0 } }
        let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let padded = header + String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        bytes += [UInt8(padded.utf8.count & 0xff), UInt8(padded.utf8.count >> 8)] + Array(padded.utf8) + payload
        let set = try ImageSet(parsingArray: bytes, path: "c.npy", format: .npy, levels: nil, counts: true)
        XCTAssertEqual(set.values.floats, [0, 3, 70000, 1])
        XCTAssertNil(set.levels)
        XCTAssertTrue(set.description.integral)
        XCTAssertEqual(set.description.storage, "<i8 counts")
        XCTAssertThrowsError(try ImageSet(parsingArray: bytes, path: "c.npy", format: .npy, levels: nil))
    }
}

/// Mapped .npy and IDX files: the values read in place, selections as row lists.
final class MappedArrayTests: XCTestCase {
    func testMappedNPYReadsAsTheParsedFile() throws {
        let dir = NSTemporaryDirectory() + "mapped-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let floats: [Float] = (0..<24).map { Float($0) * 0.25 }
        var payload: [UInt8] = []
        for v in floats { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload += $0 } }
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), }"
        let padded = header + String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        let bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(padded.utf8.count & 0xff), UInt8(padded.utf8.count >> 8)]
            + Array(padded.utf8) + payload
        let path = dir + "/x.npy"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let set = try ImageSet.load(images: path)
        XCTAssertTrue(set.values.isMapped)
        XCTAssertEqual(set.values.privateBytes, 0)
        XCTAssertEqual(set.values.floats, floats)
        let parsed = try ImageSet(parsingArray: bytes, path: path, format: .npy, levels: nil)
        XCTAssertFalse(parsed.values.isMapped)
        // A selection of a selection reads the right rows, without copying them.
        let picked = set.selecting([3, 1, 2]).selecting([2, 0])
        XCTAssertEqual(picked.values.floats, Array(floats[12..<18] + floats[18..<24]))
        XCTAssertEqual(picked.values.privateBytes, 16)
        XCTAssertEqual(picked.batch([1]).scalars, Array(floats[18..<24]))
        XCTAssertEqual(picked.values.rawBytes, Array(payload[48..<72] + payload[72..<96]))
        var part = [Float](repeating: 0, count: 4)
        part.withUnsafeMutableBufferPointer { picked.values.convert(4, 4, into: $0.baseAddress!) }
        XCTAssertEqual(part, [floats[16], floats[17], floats[18], floats[19]])
        // A gzipped file is read, not mapped.
        let idx = IDXArray.encode(dimensions: [2, 2, 2], bytes: [1, 2, 3, 4, 5, 6, 7, 8])
        try Data(idx).write(to: URL(fileURLWithPath: dir + "/i-idx3-ubyte"))
        let mappedIDX = try ImageSet.load(images: dir + "/i-idx3-ubyte")
        XCTAssertTrue(mappedIDX.values.isMapped)
        XCTAssertEqual(mappedIDX.values.floats, [1, 2, 3, 4, 5, 6, 7, 8])
    }
}

/// `--heldout-users H --validation-users V`: H test users and V validation
/// users, disjoint, from a seeded split; training evaluates on the validation users.
final class ValidationUsersTests: XCTestCase {
    func testValidationAndTestUsersAreDisjointAndSeeded() throws {
        let dir = try temporaryDirectory(removedAfter: self)
        var log = "user,item\n"
        for u in 0..<40 { for i in 0..<6 { log += "u\(u),i\((u * 7 + i * 3) % 25)\n" } }
        try write(Array(log.utf8), to: dir + "/log.csv")
        var source = DataSource(trainImages: dir + "/log.csv")
        source.interactions = InteractionColumns()
        source.heldoutUsers = 6
        source.validationUsers = 4
        let prepared = try source.prepare(seed: 3)
        let names = { (images: PreparedData.Images) -> [String] in
            guard case .loaded(let set) = images else { return [] }
            return set.rowNames ?? []
        }
        let (train, test, validation) = (names(prepared.train), names(prepared.test), names(prepared.validation!))
        XCTAssertEqual([train.count, test.count, validation.count], [30, 6, 4])
        XCTAssertEqual(Set(train + test + validation).count, 40, "every user in one set only")
        XCTAssertEqual(names(prepared.evaluatingOnValidation.test), validation)
        XCTAssertNil(prepared.evaluatingOnValidation.validation)
        XCTAssertEqual(names(try source.prepare(seed: 3).test), test, "seeded")
        XCTAssertNotEqual(names(try source.prepare(seed: 4).test), test)
        // Without validation users nothing moves to a validation set.
        source.validationUsers = nil
        XCTAssertNil(try source.prepare(seed: 3).validation)
        XCTAssertEqual(names(try source.prepare(seed: 3).evaluatingOnValidation.test).count, 6)
        // Validation users need held-out users, and users left to train on.
        source.heldoutUsers = nil
        source.validationUsers = 4
        XCTAssertThrowsError(try source.prepare(seed: 3)) { XCTAssertTrue("\($0)".contains("validation_users"), "\($0)") }
        source.heldoutUsers = 20
        source.validationUsers = 20
        XCTAssertThrowsError(try source.prepare(seed: 3)) {
            XCTAssertTrue("\($0)".contains("--heldout-users 20 and --validation-users 20 would leave none to train on"), "\($0)")
        }
    }
}
