import Foundation
import TensorCore

// Sparse count data (issue 20): interaction logs (user, item, rating) and
// Matrix Market count matrices (10x Genomics CellRanger's matrix.mtx with
// features.tsv/genes.tsv and barcodes.tsv). Both become an ImageSet whose
// values are sparse rows (`SparseRows`, CSR): one row per user or cell,
// one column per item or gene, the ids mapped to contiguous indices and
// kept as the set's column and row names, so that results name the
// original ids.

/// How an interaction log is read (`--interactions`): the columns of the
/// user and item ids and of an optional rating, chosen by their header
/// names, and the rating at or above which an interaction counts as a
/// click (`--min-rating`).
public struct InteractionColumns: Codable, Equatable, Sendable {
    public var user: String
    public var item: String
    public var rating: String?
    public var minRating: Double?

    public init(user: String = "user", item: String = "item", rating: String? = nil, minRating: Double? = nil) {
        self.user = user
        self.item = item
        self.rating = rating
        self.minRating = minRating
    }
}

extension ImageSet {
    /// One more (user × item) row set from an interaction log: one row per
    /// user, in order of first appearance; one column per item, in order of
    /// first appearance unless `items` fixes them (a test file read with the
    /// training file's items: interactions with other items are left out and
    /// counted in `unknownItems`). Without a rating column each line is one
    /// interaction (repeated pairs add up: counts); with `minRating` a
    /// pair whose rating is at least that is one click (value 1), others
    /// are dropped; with a rating column and no threshold, the ratings
    /// themselves are the values.
    public static func loadInteractions(_ path: String, columns: InteractionColumns, items fixedItems: [String]? = nil)
        throws -> (set: ImageSet, unknownItems: Int)
    {
        let bytes = try readPossiblyCompressedFile(path)
        var reader = CSVRecordReader(bytes)
        guard let header = try reader.next(path: path) else {
            throw DatasetError.incompatible(path: path, detail: "is empty: an interaction log has a header (\(columns.user), "
                                            + "\(columns.item)\(columns.rating.map { ", " + $0 } ?? "")) and one line per interaction")
        }
        let names = header.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        func index(_ name: String, _ option: String) throws -> Int {
            guard let i = names.firstIndex(of: name) else {
                throw DatasetError.incompatible(path: path, detail: "has no column \"\(name)\" (\(option)); its header has "
                                                + names.map { "\"\($0)\"" }.joined(separator: ", "))
            }
            return i
        }
        let userIndex = try index(columns.user, "--user-column"), itemIndex = try index(columns.item, "--item-column")
        let ratingIndex = try columns.rating.map { try index($0, "--rating-column") }
        if columns.minRating != nil && ratingIndex == nil {
            throw DatasetError.incompatible(path: path, detail: "--min-rating needs a rating column (--rating-column)")
        }
        var users: [String: Int32] = [:], userNames: [String] = []
        var items: [String: Int32] = [:], itemNames: [String] = fixedItems ?? []
        if let fixedItems { for (i, name) in fixedItems.enumerated() { items[name] = Int32(i) } }
        var triplets: [(row: Int32, column: Int32, value: Float)] = []
        var unknown = 0, lines = 0
        while let record = try reader.next(path: path) {
            guard record.fields.count == names.count else {
                throw DatasetError.csv(path: path, line: record.line, column: nil,
                                       detail: "has \(record.fields.count) fields, the header has \(names.count)")
            }
            lines += 1
            let userId = record.fields[userIndex].trimmingCharacters(in: .whitespaces)
            let itemId = record.fields[itemIndex].trimmingCharacters(in: .whitespaces)
            for (id, i) in [(userId, userIndex), (itemId, itemIndex)] where id.isEmpty {
                throw DatasetError.csv(path: path, line: record.line, column: "\(i + 1) (\(names[i]))", detail: "is empty: an id is needed")
            }
            var value: Float = 1
            if let ratingIndex {
                let text = record.fields[ratingIndex].trimmingCharacters(in: .whitespaces)
                guard let rating = Double(text), rating.isFinite else {
                    throw DatasetError.csv(path: path, line: record.line, column: "\(ratingIndex + 1) (\(names[ratingIndex]))",
                                           detail: "\"\(text.prefix(40))\" is not a number")
                }
                if let minimum = columns.minRating {
                    if rating < minimum { continue }
                } else {
                    value = Float(rating)
                }
            }
            let item: Int32
            if let known = items[itemId] {
                item = known
            } else if fixedItems != nil {
                unknown += 1
                continue
            } else {
                item = Int32(itemNames.count)
                items[itemId] = item
                itemNames.append(itemId)
            }
            let user: Int32
            if let known = users[userId] { user = known } else {
                user = Int32(userNames.count)
                users[userId] = user
                userNames.append(userId)
            }
            triplets.append((user, item, value))
        }
        guard !userNames.isEmpty, !itemNames.isEmpty else {
            throw DatasetError.incompatible(path: path, detail: lines == 0 ? "has a header but no interactions"
                                            : "keeps no interaction of its \(lines) lines (--min-rating \(columns.minRating ?? 0))")
        }
        var rows = SparseRows(rows: userNames.count, width: itemNames.count, triplets: triplets)
        if columns.minRating != nil {
            // Clicks: a pair listed twice is still one click.
            rows = SparseRows(width: rows.width, rowStarts: rows.rowStarts, columns: rows.columns,
                              values: [Float](repeating: 1, count: rows.nonzeroCount))
        }
        var set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: itemNames.count), values: SampleValues(sparse: rows),
                           source: path, kind: .vectors(columns: itemNames))
        set.rowNames = userNames
        set.storageName = columns.minRating != nil ? "clicks" : ratingIndex != nil ? "ratings" : "interaction counts"
        return (set, unknown)
    }

    /// A Matrix Market coordinate file (`.mtx`, `.mtx.gz`; integer or real,
    /// general) as sparse rows: its rows are the samples, or its columns
    /// with `transpose` (10x Genomics writes genes × cells). Names come
    /// from the files beside it, when there: features.tsv or genes.tsv
    /// (first column, the gene ids) and barcodes.tsv (raw or .gz).
    public static func loadMatrixMarket(_ path: String, transpose: Bool) throws -> ImageSet {
        let bytes = try readPossiblyCompressedFile(path)
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).makeIterator()
        var lineNumber = 0
        func nextLine() -> String? {
            while let line = lines.next() {
                lineNumber += 1
                let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if !text.isEmpty { return text }
            }
            return nil
        }
        func fail(_ detail: String) -> DatasetError {
            DatasetError.incompatible(path: path, detail: "line \(lineNumber): \(detail)")
        }
        guard let banner = nextLine(), banner.lowercased().hasPrefix("%%matrixmarket") else {
            throw DatasetError.incompatible(path: path, detail: "is not a Matrix Market file (no %%MatrixMarket banner)")
        }
        let words = banner.lowercased().split(separator: " ").map(String.init)
        guard words.count >= 5, words[1] == "matrix", words[2] == "coordinate" else {
            throw fail("\"\(banner.prefix(80))\": only sparse (coordinate) matrices are read")
        }
        guard ["integer", "real"].contains(words[3]) else {
            throw fail("\"\(words[3])\" values: counts are integer (or real) values")
        }
        guard words[4] == "general" else { throw fail("\"\(words[4])\" symmetry: only general matrices are read") }
        var sizeLine = nextLine()
        while let line = sizeLine, line.hasPrefix("%") { sizeLine = nextLine() }
        let sizes = (sizeLine ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" }).map { Int($0) }
        guard sizes.count == 3, let m = sizes[0], let n = sizes[1], let nnz = sizes[2], m > 0, n > 0, nnz >= 0,
              m < Int(Int32.max), n < Int(Int32.max), nnz <= m * n else {
            throw fail("\"\((sizeLine ?? "").prefix(80))\" is not a size line (rows, columns, entries)")
        }
        var triplets: [(row: Int32, column: Int32, value: Float)] = []
        triplets.reserveCapacity(nnz)
        while triplets.count < nnz, let line = nextLine() {
            if line.hasPrefix("%") { continue }
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count == 3, let i = Int(f[0]), let j = Int(f[1]), let v = Float(f[2]), v.isFinite else {
                throw fail("\"\(line.prefix(80))\" is not an entry (row, column, value)")
            }
            guard (1...m).contains(i), (1...n).contains(j) else {
                throw fail("entry (\(i), \(j)) is outside the \(m) × \(n) matrix")
            }
            triplets.append(transpose ? (Int32(j - 1), Int32(i - 1), v) : (Int32(i - 1), Int32(j - 1), v))
        }
        guard triplets.count == nnz else {
            throw DatasetError.incompatible(path: path, detail: "holds \(triplets.count) entries, its size line says \(nnz)")
        }
        let (rows, width) = transpose ? (n, m) : (m, n)
        let sparse = SparseRows(rows: rows, width: width, triplets: triplets)
        // Names beside the matrix: gene ids name the genes' axis, barcodes the cells'.
        let folder = (path as NSString).deletingLastPathComponent
        func names(_ candidates: [String], count: Int) throws -> [String]? {
            for name in candidates {
                for file in [name, name + ".gz"] {
                    let p = folder.isEmpty ? file : folder + "/" + file
                    guard FileManager.default.fileExists(atPath: p) else { continue }
                    let text = String(decoding: try readPossiblyCompressedFile(p), as: UTF8.self)
                    let ids = text.split(separator: "\n").map { String($0.split(separator: "\t").first ?? "") }
                        .map { $0.trimmingCharacters(in: .whitespaces) }
                    guard ids.count == count else {
                        throw DatasetError.incompatible(path: p, detail: "names \(ids.count) entries; \(path) has \(count) on that axis")
                    }
                    return ids
                }
            }
            return nil
        }
        let genes = try names(["features.tsv", "genes.tsv"], count: width)
        let cells = try names(["barcodes.tsv"], count: rows)
        var set = ImageSet(shape: ImageShape(channels: 1, height: 1, width: width), values: SampleValues(sparse: sparse),
                           source: path, kind: .vectors(columns: genes ?? (1...width).map(String.init)))
        set.rowNames = cells
        set.storageName = "Matrix Market \(words[3])s"
        return set
    }
}
