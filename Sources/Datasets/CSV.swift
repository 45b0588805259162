import Foundation

/// A table of numbers from a CSV file (RFC 4180: comma-separated fields,
/// double quotes around fields that hold commas, quotes or line breaks, a
/// doubled quote inside them; LF or CRLF line ends; blank lines skipped),
/// raw or gzipped.
///
/// - The first row is a header when any of its fields is not a number (and
///   not a missing-value marker); it names the columns. Without one, the
///   columns are named by position, "1", "2", ….
/// - `columns` chooses the columns of the samples, by name, in that order;
///   by default every column but the label column. Only chosen columns are
///   parsed, so others may hold text (ids, dates).
/// - `labelColumn` names a column of integer labels ≥ 0.
/// - Empty fields, `NA` and `NaN` (any case) are missing values, kept as
///   NaN; infinities and other text are errors.
///
/// Every error names the file, the line and the column.
public struct CSVTable: Equatable, Sendable {
    /// The chosen columns' names, in order.
    public var columnNames: [String]
    /// Whether the file had a header row.
    public var hasHeader: Bool
    public var rowCount: Int
    /// rowCount × columnNames.count values, row-major; NaN where missing.
    public var values: [Float]
    public var labels: [Int32]?
    /// The number of missing values.
    public var missingCount: Int

    public static let missingMarkers: Set<String> = ["", "na", "nan"]

    public init(parsing data: [UInt8], path: String, columns chosen: [String]? = nil, labelColumn: String? = nil) throws {
        func fail(_ line: Int, _ column: String?, _ detail: String) -> DatasetError {
            .csv(path: path, line: line, column: column, detail: detail)
        }
        var reader = CSVRecordReader(data)
        // The first record: a header, or the first row.
        guard let first = try reader.next(path: path) else {
            throw DatasetError.incompatible(path: path, detail: "is empty: a CSV file needs at least one row of numbers")
        }
        let isHeader = first.fields.contains { field in
            !Self.missingMarkers.contains(field.lowercased()) && Double(field.trimmingCharacters(in: .whitespaces)) == nil
        }
        let width = first.fields.count
        let names = isHeader ? first.fields.map { $0.trimmingCharacters(in: .whitespaces) } : (1...width).map(String.init)
        if isHeader {
            var seen = Set<String>()
            for (i, name) in names.enumerated() where !seen.insert(name).inserted {
                throw fail(first.line, "\(i + 1)", "the header names column \"\(name)\" twice")
            }
        }
        func index(of name: String, _ what: String) throws -> Int {
            guard let i = names.firstIndex(of: name) else {
                throw DatasetError.incompatible(path: path, detail: "has no \(what) \"\(name)\" (its columns: "
                    + names.prefix(20).joined(separator: ", ") + (names.count > 20 ? ", …" : "") + ")")
            }
            return i
        }
        let labelIndex = try labelColumn.map { try index(of: $0, "column") }
        let picked = try chosen.map { try $0.map { try index(of: $0, "column") } }
            ?? (0..<width).filter { $0 != labelIndex }
        guard !picked.isEmpty else {
            throw DatasetError.incompatible(path: path, detail: "has no columns of values besides the label column")
        }
        if let labelIndex, picked.contains(labelIndex) {
            throw DatasetError.incompatible(path: path, detail: "uses column \"\(names[labelIndex])\" both as values and as labels")
        }
        var values: [Float] = []
        var labels: [Int32] = []
        var missing = 0
        var rows = 0
        func add(_ record: CSVRecord) throws {
            guard record.fields.count == width else {
                throw fail(record.line, nil, "has \(record.fields.count) field\(record.fields.count == 1 ? "" : "s"), "
                           + "\(isHeader ? "the header" : "the first row") has \(width) (a ragged row)")
            }
            for i in picked {
                let text = record.fields[i].trimmingCharacters(in: .whitespaces)
                if Self.missingMarkers.contains(text.lowercased()) {
                    values.append(.nan)
                    missing += 1
                    continue
                }
                guard let v = Double(text), v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                    let what = Double(text) == nil ? "is not a number" : "is not a finite float32 number"
                    throw fail(record.line, "\(i + 1) (\(names[i]))", "\"\(text.prefix(40))\" \(what)")
                }
                values.append(Float(v))
            }
            if let labelIndex {
                let text = record.fields[labelIndex].trimmingCharacters(in: .whitespaces)
                guard let label = Int32(text), label >= 0 else {
                    throw fail(record.line, "\(labelIndex + 1) (\(names[labelIndex]))",
                               "label \"\(text.prefix(40))\" is not an integer ≥ 0")
                }
                labels.append(label)
            }
            rows += 1
        }
        if !isHeader { try add(first) }
        while let record = try reader.next(path: path) { try add(record) }
        guard rows > 0 else {
            throw DatasetError.incompatible(path: path, detail: "has a header but no rows")
        }
        columnNames = picked.map { names[$0] }
        hasHeader = isHeader
        rowCount = rows
        self.values = values
        self.labels = labelIndex == nil ? nil : labels
        missingCount = missing
    }

    /// Whether a file is read as CSV: by its name (.csv, .csv.gz, .tsv is not supported).
    public static func isCSVPath(_ path: String) -> Bool {
        let lower = path.lowercased()
        return lower.hasSuffix(".csv") || lower.hasSuffix(".csv.gz")
    }
}

/// A CSV file's records as text, exactly as written (blank lines left out):
/// for outputs that must give back what they read (imputation fills the
/// missing cells of a table and leaves every other field as it was).
public struct CSVRecords: Sendable {
    /// The header row, when the file has one (see `CSVTable`).
    public var header: [String]?
    public var rows: [[String]]

    public init(parsing data: [UInt8], path: String) throws {
        var reader = CSVRecordReader(data)
        var records: [[String]] = []
        while let record = try reader.next(path: path) { records.append(record.fields) }
        let hasHeader = records.first.map { first in
            first.contains { !CSVTable.missingMarkers.contains($0.lowercased())
                             && Double($0.trimmingCharacters(in: .whitespaces)) == nil }
        } ?? false
        header = hasHeader ? records[0].map { $0.trimmingCharacters(in: .whitespaces) } : nil
        rows = Array(records.dropFirst(hasHeader ? 1 : 0))
    }

    /// The column names: the header's, or "1", "2", … by position.
    public var columnNames: [String] { header ?? (1...max(rows.first?.count ?? 0, 1)).map(String.init) }

    /// The file again, with `header` and `rows` (fields quoted where needed).
    public static func encode(header: [String]?, rows: [[String]]) -> [UInt8] {
        func field(_ text: String) -> String {
            guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
            return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var text = header.map { $0.map(field).joined(separator: ",") + "\n" } ?? ""
        for row in rows { text += row.map(field).joined(separator: ",") + "\n" }
        return Array(text.utf8)
    }
}

/// One record of a CSV file: its fields and the line it starts on (1-based).
struct CSVRecord {
    var fields: [String]
    var line: Int
}

/// Splits CSV bytes into records (RFC 4180), skipping blank lines.
struct CSVRecordReader {
    let bytes: [UInt8]
    var position = 0
    var line = 1

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte-order mark, as spreadsheet programs write.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    mutating func next(path: String) throws -> CSVRecord? {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        while position < bytes.count {
            // Skip blank lines.
            if bytes[position] == lf { position += 1; line += 1; continue }
            if bytes[position] == cr && position + 1 < bytes.count && bytes[position + 1] == lf {
                position += 2; line += 1; continue
            }
            break
        }
        guard position < bytes.count else { return nil }
        let start = line
        var fields: [String] = []
        var field: [UInt8] = []
        var quoted = false, wasQuoted = false
        while position < bytes.count {
            let c = bytes[position]
            if quoted {
                if c == quote {
                    if position + 1 < bytes.count && bytes[position + 1] == quote {
                        field.append(quote)
                        position += 2
                        continue
                    }
                    quoted = false
                    position += 1
                    continue
                }
                if c == lf { line += 1 }
                field.append(c)
                position += 1
                continue
            }
            if c == quote {
                guard field.allSatisfy({ $0 == UInt8(ascii: " ") }) && !wasQuoted else {
                    throw DatasetError.csv(path: path, line: line, column: "\(fields.count + 1)",
                                           detail: "has a quote inside an unquoted field")
                }
                field = []
                quoted = true
                wasQuoted = true
                position += 1
                continue
            }
            if c == comma {
                fields.append(String(decoding: field, as: UTF8.self))
                field = []
                wasQuoted = false
                position += 1
                continue
            }
            if c == lf || (c == cr && position + 1 < bytes.count && bytes[position + 1] == lf) {
                position += c == lf ? 1 : 2
                line += 1
                break
            }
            if wasQuoted && c != UInt8(ascii: " ") {
                throw DatasetError.csv(path: path, line: line, column: "\(fields.count + 1)",
                                       detail: "has text after a closing quote")
            }
            field.append(c)
            position += 1
        }
        if quoted {
            throw DatasetError.csv(path: path, line: start, column: "\(fields.count + 1)",
                                   detail: "has a quote that is never closed")
        }
        fields.append(String(decoding: field, as: UTF8.self))
        return CSVRecord(fields: fields, line: start)
    }
}
