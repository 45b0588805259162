import Foundation
import XCTest
import TensorCore
import TestSupport
@testable import Datasets

/// CSV tables, integer levels and standardization.
final class TablesAndLevelsTests: XCTestCase {
    func csv(_ text: String, columns: [String]? = nil, label: String? = nil) throws -> CSVTable {
        try CSVTable(parsing: Array(text.utf8), path: "/d/t.csv", columns: columns, labelColumn: label)
    }

    func assertCSVError(_ text: String, columns: [String]? = nil, label: String? = nil, _ expected: String,
                        line: UInt = #line) {
        XCTAssertThrowsError(try csv(text, columns: columns, label: label), line: line) { error in
            XCTAssertEqual("\(error)", expected, line: line)
        }
    }

    func testHeaderColumnsLabelsAndQuotes() throws {
        XCTAssertThrowsError(try csv("age,\"income, k$\",id,class\n31,25,a7,0\n")) {
            // Without --columns every column but the label column is a value: "a7" is not a number.
            XCTAssertEqual("\($0)", "/d/t.csv, line 2, column 3 (id): \"a7\" is not a number")
        }
        let chosen = try csv("age,\"income, k$\",id,class\r\n31,2.5e1,a7,0\n\n 40 , -3 ,\"b,\"\"8\"\"\",2\n",
                             columns: ["income, k$", "age"], label: "class")
        XCTAssertEqual(chosen.columnNames, ["income, k$", "age"])
        XCTAssertEqual(chosen.values, [25, 31, -3, 40])
        XCTAssertEqual(chosen.labels, [0, 2])
        XCTAssertEqual(chosen.rowCount, 2)
        XCTAssertTrue(chosen.hasHeader)
        // No header: columns named by position, every row is data.
        let plain = try csv("1,2\n3,4.5\n")
        XCTAssertFalse(plain.hasHeader)
        XCTAssertEqual(plain.columnNames, ["1", "2"])
        XCTAssertEqual(plain.values, [1, 2, 3, 4.5])
        XCTAssertEqual(try csv("1,2\n3,4\n", columns: ["2"]).values, [2, 4])
        // Missing values are kept as NaN and counted (the models refuse them when loading for training).
        let missing = try csv("a,b\n1,\n NA ,nan\n2,3\n")
        XCTAssertEqual(missing.missingCount, 3)
        XCTAssertEqual(missing.values.map { $0.isNaN }, [false, true, true, true, false, false])
    }

    func testBadTablesNameTheFileLineAndColumn() {
        assertCSVError("", "/d/t.csv: is empty: a CSV file needs at least one row of numbers")
        assertCSVError("\n\n", "/d/t.csv: is empty: a CSV file needs at least one row of numbers")
        assertCSVError("a,b\n", "/d/t.csv: has a header but no rows")
        assertCSVError("a,b\n1,2\n3\n", "/d/t.csv, line 3: has 1 field, the header has 2 (a ragged row)")
        assertCSVError("1,2\n3,4,5\n", "/d/t.csv, line 2: has 3 fields, the first row has 2 (a ragged row)")
        assertCSVError("a,b\n1,x2\n", "/d/t.csv, line 2, column 2 (b): \"x2\" is not a number")
        assertCSVError("a,b\n1,inf\n", "/d/t.csv, line 2, column 2 (b): \"inf\" is not a finite float32 number")
        assertCSVError("a,b\n1,1e39\n", "/d/t.csv, line 2, column 2 (b): \"1e39\" is not a finite float32 number")
        assertCSVError("a,y\n1,0.5\n", label: "y", "/d/t.csv, line 2, column 2 (y): label \"0.5\" is not an integer ≥ 0")
        assertCSVError("a,y\n1,-1\n", label: "y", "/d/t.csv, line 2, column 2 (y): label \"-1\" is not an integer ≥ 0")
        assertCSVError("a,y\n1,\n", label: "y", "/d/t.csv, line 2, column 2 (y): label \"\" is not an integer ≥ 0")
        assertCSVError("a,b\n1,2\n", columns: ["c"], "/d/t.csv: has no column \"c\" (its columns: a, b)")
        assertCSVError("a,b\n1,2\n", columns: ["a"], label: "a", "/d/t.csv: uses column \"a\" both as values and as labels")
        assertCSVError("a,a\n1,2\n", "/d/t.csv, line 1, column 2: the header names column \"a\" twice")
        assertCSVError("a,b\n1,\"2\n", "/d/t.csv, line 2, column 2: has a quote that is never closed")
        assertCSVError("a,b\n1,2\"3\n", "/d/t.csv, line 2, column 2: has a quote inside an unquoted field")
        assertCSVError("a,b\n1,\"2\"3\n", "/d/t.csv, line 2, column 2: has text after a closing quote")
    }

    func testCSVFilesLoadAsVectorsWithTheirNames() throws {
        let dir = try temporaryDirectory()
        try write(Array("x,y,label\n0.5,1,0\n1.5,2,1\n2.5,3,1\n".utf8), to: "\(dir)/train.csv.gz", gzip: true)
        XCTAssertEqual(try DataFormat.of("\(dir)/train.csv.gz"), .csv)
        let set = try ImageSet.load(images: "\(dir)/train.csv.gz", options: ReadOptions(labelColumn: "label"))
        XCTAssertEqual(set.shape, ImageShape(channels: 1, height: 1, width: 2))
        XCTAssertEqual(set.kind, .vectors(columns: ["x", "y"]))
        XCTAssertFalse(set.isImages)
        XCTAssertNil(set.levels)
        XCTAssertEqual(set.labels, [0, 1, 1])
        XCTAssertEqual(set.batch([2, 0]).scalars, [2.5, 3, 0.5, 1])
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/train.csv.gz", options: ReadOptions(levels: 4)))
        // A missing value: marked in the mask, 0 in batches; finite otherwise.
        try write(Array("x,y\n0.5,1\n,2\nNA,nan\n".utf8), to: "\(dir)/holes.csv")
        let holes = try ImageSet.load(images: "\(dir)/holes.csv")
        XCTAssertNoThrow(try holes.validateFinite())
        XCTAssertEqual(holes.observed, [1, 1, 0, 1, 0, 0])
        XCTAssertEqual(holes.missingCount, 3)
        XCTAssertEqual(holes.rowsWithoutObservedValues, 1)
        XCTAssertEqual(holes.batch([1, 0]).scalars, [0, 2, 0.5, 1])
        XCTAssertEqual(holes.mask([1, 2])?.scalars, [0, 1, 0, 0])
        XCTAssertEqual(holes.selecting([2, 1]).observed, [0, 0, 0, 1])
        // Standardization ignores missing values.
        let statistics = Standardization(fitting: holes)
        XCTAssertEqual(statistics.mean, [0.5, 1.5])
        // A mask file marks more values missing; one of another shape is refused, naming both files.
        try write(Array("1,1\n1,0\n1,1\n".utf8), to: "\(dir)/mask.csv")
        let masked = try holes.withMask(try ImageSet.loadMask("\(dir)/mask.csv", for: holes), source: "\(dir)/mask.csv")
        XCTAssertEqual(masked.observed, [1, 1, 0, 0, 0, 0])
        try write(Array("1,1\n1,0\n".utf8), to: "\(dir)/short.csv")
        XCTAssertThrowsError(try ImageSet.loadMask("\(dir)/short.csv", for: holes)) {
            XCTAssertTrue("\($0)".contains("short.csv: holds 4 mask values, but \(dir)/holes.csv has 3 samples of 2 values (6)"), "\($0)")
        }
        try write(Array("1,1\n1,0.5\n1,1\n".utf8), to: "\(dir)/half.csv")
        XCTAssertThrowsError(try ImageSet.loadMask("\(dir)/half.csv", for: holes)) {
            XCTAssertTrue("\($0)".contains("value 0.5 at sample 1, element 1: a mask holds 1 (observed) and 0 (missing)"), "\($0)")
        }
    }

    func testIntegerArraysKeepTheirLevels() throws {
        let dir = try temporaryDirectory()
        func int16(_ values: [Int16]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }
        func int64(_ values: [Int64]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }
        // int16 with 1000 levels: stored as 16-bit words; the encoder sees level/999, the likelihood the level.
        try write(npyBytes(descr: "<i2", shape: [2, 3], payload: int16([0, 999, 5, 17, 3, 998])), to: "\(dir)/w.npy")
        let words = try ImageSet.load(images: "\(dir)/w.npy", options: ReadOptions(levels: 1000))
        XCTAssertEqual(words.values.element, .uint16)
        XCTAssertEqual(words.levels, 1000)
        XCTAssertEqual(words.kind, .vectors(columns: nil))
        XCTAssertEqual(words.batch([0], as: .levels).scalars, [0, 999, 5])
        XCTAssertEqual(words.batch([0]).scalars, [0, 999 * (1 / Float(999)), 5 * (1 / Float(999))])
        XCTAssertEqual(words.description.levels, 1000)
        // int64 0/1 data with 2 levels: bytes.
        try write(npyBytes(descr: "<i8", shape: [2, 2, 2], payload: int64([0, 1, 1, 0, 1, 1, 0, 0])), to: "\(dir)/b.npy")
        let binary = try ImageSet.load(images: "\(dir)/b.npy", options: ReadOptions(levels: 2))
        XCTAssertEqual(binary.values.element, .uint8)
        XCTAssertEqual(binary.batch([1]).scalars, [1, 1, 0, 0])
        // uint8 implies 256 levels; with fewer, every value must be below them.
        try write(npyBytes(descr: "|u1", shape: [2, 2], payload: [0, 3, 200, 1]), to: "\(dir)/u.npy")
        XCTAssertEqual(try ImageSet.load(images: "\(dir)/u.npy").levels, 256)
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/u.npy", options: ReadOptions(levels: 4))) {
            XCTAssertEqual($0 as? DatasetError, .levelOutOfRange(path: "\(dir)/u.npy", index: 2, value: 200, levels: 4))
        }
        // Out of range, negative, no levels given, too many levels.
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/w.npy", options: ReadOptions(levels: 999))) {
            XCTAssertEqual($0 as? DatasetError, .levelOutOfRange(path: "\(dir)/w.npy", index: 1, value: 999, levels: 999))
        }
        try write(npyBytes(descr: "<i2", shape: [1, 2], payload: int16([3, -1])), to: "\(dir)/n.npy")
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/n.npy", options: ReadOptions(levels: 10))) {
            XCTAssertEqual($0 as? DatasetError, .levelOutOfRange(path: "\(dir)/n.npy", index: 1, value: -1, levels: 10))
        }
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/w.npy")) {
            XCTAssertEqual($0 as? DatasetError, .integersNeedLevels(path: "\(dir)/w.npy", dtype: "<i2"))
        }
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/w.npy", options: ReadOptions(levels: 70_000)))
        // Floats have no levels.
        try write(npyBytes(descr: "<f4", shape: [1, 4], payload: littleEndian([0, 1, 2, 3])), to: "\(dir)/f.npy")
        XCTAssertThrowsError(try ImageSet.load(images: "\(dir)/f.npy", options: ReadOptions(levels: 4)))
    }

    func testStandardizationUsesTheTrainingStatisticsAndRestoresTheUnits() throws {
        // Two columns: mean 2 and 10, standard deviation (ddof 0) 1 and 0 (constant: divided by 1).
        let set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: 2),
                           values: SampleValues(floats: [1, 10, 3, 10, 2, 10]), kind: .vectors(columns: ["a", "b"]))
        let s = Standardization(fitting: set)
        XCTAssertEqual(s.mean, [2, 10])
        XCTAssertEqual(s.standardDeviation[0], (2.0 / 3).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(s.standardDeviation[1], 1)
        var standardized = set
        standardized.standardization = s
        let x = standardized.batch([0, 1, 2])
        XCTAssertEqual(Double(x.scalars[0]), -1 / (2.0 / 3).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(x.scalars[1], 0)
        // Levels are the raw values, never standardized.
        XCTAssertEqual(standardized.batch([0], as: .levels).scalars, [1, 10])
        let restored = s.restore(x.scalars)
        for (r, v) in zip(restored, [1.0, 10, 3, 10, 2, 10]) { XCTAssertEqual(r, v, accuracy: 1e-6) }
        // Missing values are left out of the statistics.
        let holes = ImageSet(shape: ImageShape(channels: 1, height: 1, width: 1), values: SampleValues(floats: [1, .nan, 3]))
        XCTAssertEqual(Standardization(fitting: holes).mean, [2])
    }

    func testAFolderOrFileIsClassifiedOnce() throws {
        let dir = try temporaryDirectory()
        try write(npyBytes(descr: "|u1", shape: [1, 4], payload: [1, 2, 3, 4]), to: "\(dir)/a.npy.gz", gzip: true)
        try write(IDXArray.encode(dimensions: [1, 2, 2], bytes: [1, 2, 3, 4]), to: "\(dir)/a.idx")
        XCTAssertEqual(try DataFormat.of("\(dir)/a.npy.gz"), .npy)
        XCTAssertEqual(try DataFormat.of("\(dir)/a.idx"), .idx)
        XCTAssertEqual(try DataFormat.of(dir), .datasetDirectory)
        XCTAssertThrowsError(try DataFormat.of("\(dir)/none")) {
            XCTAssertEqual($0 as? DatasetError, .notFound(path: "\(dir)/none", hint: ""))
        }
    }
}
