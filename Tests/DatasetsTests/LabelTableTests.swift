import Foundation
import XCTest
import TestSupport
@testable import Datasets

/// Labels from a column of a CSV table (`--covariate`, `--train-labels FILE.csv:COLUMN`).
final class LabelTableTests: XCTestCase {
    func folder() throws -> String { try temporaryDirectory(removedAfter: self) }

    func table(_ text: String, in dir: String, name: String = "cells.csv") throws -> String {
        let path = dir + "/" + name
        try write(Array(text.utf8), to: path, gzip: name.hasSuffix(".gz"))
        return path
    }

    func testSpecParsing() {
        XCTAssertEqual(LabelTable.Spec("a/cells.csv:batch").map { [$0.path, $0.column] }, ["a/cells.csv", "batch"])
        XCTAssertEqual(LabelTable.Spec("x.CSV.gz:cell type").map { [$0.path, $0.column] }, ["x.CSV.gz", "cell type"])
        XCTAssertEqual(LabelTable.Spec("d.csv:/x.csv:c").map { [$0.path, $0.column] }, ["d.csv:/x.csv", "c"])
        XCTAssertNil(LabelTable.Spec("cells.csv"))
        XCTAssertNil(LabelTable.Spec("cells.csv:"))
        XCTAssertNil(LabelTable.Spec("labels.npy"))
        XCTAssertNil(LabelTable.Spec("data.h5:/labels"))
    }

    func testRowsMatchByNameInAnyOrder() throws {
        let dir = try folder()
        let path = try table("barcode,batch,type\nC3,b2,x\nC1,b10,y\nC2,b2,x\nC9,b1,z\n", in: dir, name: "cells.csv.gz")
        let spec = LabelTable.Spec(path + ":batch")!
        let (labels, names) = try LabelTable.labels(spec, rows: 3, rowNames: ["C1", "C2", "C3"], data: "m.mtx")
        // Categories over the whole column, as text (b1 < b10 < b2): the same numbering for every file the table labels.
        XCTAssertEqual(names, ["b1", "b10", "b2"])
        XCTAssertEqual(labels, [1, 2, 2])
    }

    func testAnInteractionLogIsItsOwnTable() throws {
        // One row per click; the user's group repeats on each of its rows.
        let dir = try folder()
        let path = try table("user,item,group\nu2,i1,west\nu1,i1,east\nu2,i7,west\nu1,i3,east\n", in: dir)
        let (labels, names) = try LabelTable.labels(LabelTable.Spec(path + ":group")!, rows: 2, rowNames: ["u2", "u1"], data: path)
        XCTAssertEqual(names, ["east", "west"])
        XCTAssertEqual(labels, [1, 0])
    }

    func testRowsInOrderAndIntegerCategoriesSortNumerically() throws {
        let dir = try folder()
        let path = try table("group\n10\n2\n2\n-1\n", in: dir)
        let (labels, names) = try LabelTable.labels(LabelTable.Spec(path + ":group")!, rows: 4, rowNames: nil, data: "x.npy")
        XCTAssertEqual(names, ["-1", "2", "10"])
        XCTAssertEqual(labels, [2, 1, 1, 0])
        // Row names that no column holds: rows in order, when their count is right.
        let (again, _) = try LabelTable.labels(LabelTable.Spec(path + ":group")!, rows: 4, rowNames: ["u1", "u2", "u3", "u4"],
                                               data: "log.csv")
        XCTAssertEqual(again, labels)
    }

    func testErrorsNameTheTableAndWhatIsWrong() throws {
        let dir = try folder()
        func failure(_ text: String, _ column: String, rows: Int, rowNames: [String]? = nil) throws -> String {
            let path = try table(text, in: dir)
            do {
                _ = try LabelTable.labels(LabelTable.Spec(path + ":" + column)!, rows: rows, rowNames: rowNames, data: "m.mtx")
            } catch {
                let message = "\(error)"
                XCTAssertTrue(message.contains(path), message)
                return message
            }
            XCTFail("\(text) accepted")
            return ""
        }
        XCTAssertTrue(try failure("id,batch\na,1\n", "donor", rows: 1).contains("has no column \"donor\" (its columns: id, batch)"))
        XCTAssertTrue(try failure("1,2\n3,4\n", "1", rows: 1).contains("has no header row"))
        XCTAssertTrue(try failure("id,batch\na,1\nb\n", "batch", rows: 2).contains("row 2 has 1 fields, the header 2"))
        XCTAssertTrue(try failure("id,batch\na,\n", "batch", rows: 1).contains("row 1 has no value in column \"batch\""))
        XCTAssertTrue(try failure("id,batch\na,1\nb,2\n", "batch", rows: 3, rowNames: ["a", "b", "c"])
            .contains("has 2 rows but m.mtx has 3 samples; no column of it holds all of m.mtx's 3 sample names (the first: \"a\")"))
        XCTAssertTrue(try failure("id,batch\na,1\nb,2\na,2\n", "batch", rows: 2, rowNames: ["a", "b"])
            .contains("gives sample \"a\" two values of \"batch\": \"1\" (row 1) and \"2\" (row 3); a covariate has one value per sample"))
    }

    func testLoadingWithATableLabelsTheSetAndNamesTheClasses() throws {
        let dir = try folder()
        let data = dir + "/x.npy"
        try write(npyBytes(descr: "<f4", shape: [3, 2], payload: littleEndian([1, 2, 3, 4, 5, 6])), to: data)
        let path = try table("kind\nb\na\nb\n", in: dir)
        let set = try ImageSet.load(images: data, labels: path + ":kind")
        XCTAssertEqual(set.labels, [1, 0, 1])
        XCTAssertEqual(set.labelNames, ["a", "b"])
        XCTAssertEqual(set.selecting([2, 1]).labelNames, ["a", "b"])
        XCTAssertThrowsError(try ImageSet.load(images: data, labels: path)) { error in
            XCTAssertTrue("\(error)".contains("is a table: name the column of labels"), "\(error)")
        }
    }
}
