import CZlib
import Foundation
import TensorCore

/// What a path holds: the one place that decides (by what it is, its name
/// or its first bytes), for training data sources and for the subcommands'
/// `--images` alike.
public enum DataFormat: String, Sendable {
    /// The MNIST family's IDX files, raw or gzipped.
    case idx
    /// NumPy's .npy, raw or gzipped.
    case npy
    /// A table of numbers (.csv or .csv.gz).
    case csv
    /// A dataset in an HDF5 file (`file.h5:/path`, see `HDF5Path`).
    case hdf5 = "HDF5"
    /// A Matrix Market coordinate file (.mtx or .mtx.gz): sparse counts.
    case matrixMarket = "Matrix Market"
    /// A folder of PNG and JPEG images (see `ImageFolder`).
    case imageFolder = "image folder"
    /// A folder of IDX or NPY files with the dataset names (see `DatasetDirectory`).
    case datasetDirectory = "dataset directory"

    /// The format of `path`. A missing path is `DatasetError.notFound`.
    public static func of(_ path: String) throws -> DataFormat {
        if let h5 = HDF5Path(path) {
            guard FileManager.default.fileExists(atPath: h5.file) else { throw DatasetError.notFound(path: h5.file, hint: "") }
            return .hdf5
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DatasetError.notFound(path: path, hint: "")
        }
        if isFolder.boolValue { return ImageFolder.holdsImages(path) ? .imageFolder : .datasetDirectory }
        if CSVTable.isCSVPath(path) { return .csv }
        if path.hasSuffix(".mtx") || path.hasSuffix(".mtx.gz") { return .matrixMarket }
        return NPYArray.looksLikeNPY(try readPrefix(path, count: 6)) ? .npy : .idx
    }

    /// The first `count` bytes of a file, decompressed if it is gzipped.
    static func readPrefix(_ path: String, count: Int) throws -> [UInt8] {
        guard let file = gzopen(path, "rb") else {
            throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { gzclose(file) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(count)) }
        return n > 0 ? Array(bytes[0..<Int(n)]) : []
    }
}

/// How to read a file of samples (the data source's options).
public struct ReadOptions: Equatable, Sendable {
    /// K for integer samples: values must lie in 0…K−1 (uint8 implies 256).
    public var levels: Int?
    /// CSV: the columns of the samples, by name, in order (default: all but the label column).
    public var columns: [String]?
    /// CSV: the column of integer labels.
    public var labelColumn: String?
    /// Integer arrays hold counts (a count likelihood's data): read without
    /// levels, as exact floats (up to 2^24).
    public var counts: Bool
    /// CSV: an interaction log, one line per (user, item[, rating]).
    public var interactions: InteractionColumns?
    /// The training file's columns (item ids) that a test file's
    /// interactions map to.
    public var items: [String]?
    /// Matrix Market: the samples are the matrix's columns.
    public var transpose: Bool

    public init(levels: Int? = nil, columns: [String]? = nil, labelColumn: String? = nil, counts: Bool = false,
                interactions: InteractionColumns? = nil, transpose: Bool = false) {
        self.levels = levels
        self.columns = columns
        self.labelColumn = labelColumn
        self.counts = counts
        self.interactions = interactions
        self.transpose = transpose
    }
}

extension SampleValues {
    /// Integer samples as read from a file: K levels (checked to lie in
    /// 0…K−1, kept in the narrowest type that holds them) or, without
    /// levels, counts (checked non-negative and at most 2^24, exact as
    /// floats) when the likelihood models counts; anything else needs
    /// `--levels`.
    init(integers v: [Int64], levels: Int?, counts: Bool, path: String, dtype: String) throws {
        guard levels != nil || counts else { throw DatasetError.integersNeedLevels(path: path, dtype: dtype) }
        if let k = levels, k > 65536 {
            throw DatasetError.incompatible(path: path, detail: "more than 65536 levels are not supported (got \(k))")
        }
        try Self.checkIntegers(v, levels: levels, path: path)
        switch Self.integerElement(levels: levels) {
        case .uint8: self = SampleValues(bytes: v.map { UInt8($0) })
        case .uint16: self = SampleValues(words: v.map { UInt16($0) })
        case .float32: self = SampleValues(floats: v.map { Float($0) })
        }
    }

    /// What integer samples are kept as: K ≤ 256 levels as bytes, more as
    /// 16-bit words, counts (no levels) as float32.
    static func integerElement(levels: Int?) -> Element {
        guard let k = levels else { return .float32 }
        return k <= 256 ? .uint8 : .uint16
    }

    /// The rules for integer samples: with K levels each lies in 0…K−1;
    /// without, each is a count, non-negative and at most 2^24 (exact as a
    /// float). `offset` is the index of `v`'s first value in its file, so
    /// that a file read in blocks names the value's place in it.
    static func checkIntegers<C: RandomAccessCollection>(_ v: C, levels: Int?, path: String, offset: Int = 0) throws
        where C.Element == Int64, C.Index == Int
    {
        if let k = levels {
            if let i = v.firstIndex(where: { $0 < 0 || $0 >= Int64(k) }) {
                throw DatasetError.levelOutOfRange(path: path, index: offset + i, value: v[i], levels: k)
            }
        } else if let i = v.firstIndex(where: { $0 < 0 || $0 > 1 << 24 }) {
            throw DatasetError.incompatible(path: path, detail: "value \(v[i]) at index \(offset + i): counts are "
                                            + "non-negative integers up to 2^24 (16777216)")
        }
    }

    /// Checks that every value (bytes read in place) lies below K.
    func checkBelow(levels k: Int, path: String) throws {
        var bad: (Int, Float)? = nil
        forEachChunk { offset, chunk in
            guard bad == nil else { return }
            if let i = chunk.firstIndex(where: { $0 >= Float(k) }) { bad = (offset + i, chunk[i]) }
        }
        if let (index, value) = bad {
            throw DatasetError.levelOutOfRange(path: path, index: index, value: Int64(value), levels: k)
        }
    }
}

extension ImageSet {
    /// Loads the samples of a file and, optionally, their labels (IDX or
    /// .npy, N integers): IDX (N×H×W or N×C×H×W unsigned bytes); .npy
    /// (uint8, other integers with their levels, float32 or float64: N×H×W,
    /// N×C×H×W, or N×D, shown as √D×√D images when D is a perfect square and
    /// as vectors otherwise); or CSV (table rows). Raw or gzipped.
    public static func load(images path: String, labels: String? = nil, options: ReadOptions = ReadOptions()) throws -> ImageSet {
        let format = try DataFormat.of(path)
        var set: ImageSet
        if options.interactions != nil && format != .csv {
            throw DatasetError.incompatible(path: path, detail: "is not a CSV file: an interaction log is a CSV file")
        }
        if options.transpose && format != .matrixMarket {
            throw DatasetError.incompatible(path: path, detail: "is not a Matrix Market file: --transpose applies to .mtx files")
        }
        switch format {
        case .csv where options.interactions != nil:
            set = try loadInteractions(path, columns: options.interactions!, items: options.items).set
        case .csv:
            set = try loadCSV(path, options: options)
        case .matrixMarket:
            set = try loadMatrixMarket(path, transpose: options.transpose)
        case .hdf5:
            set = try loadHDF5(HDF5Path(path)!, levels: options.levels, counts: options.counts)
        case .npy, .idx:
            set = try loadArray(path, format: format, levels: options.levels, counts: options.counts)
        case .imageFolder, .datasetDirectory:
            throw DatasetError.incompatible(path: path, detail: "is a folder; name a file of samples (IDX, .npy or .csv)")
        }
        if (format != .csv || options.interactions != nil) && (options.columns != nil || options.labelColumn != nil) {
            throw DatasetError.incompatible(path: path, detail: "is not a CSV file: columns are chosen in CSV files only")
        }
        if let labels {
            guard set.labels == nil else {
                throw DatasetError.incompatible(path: labels, detail: "labels given twice: \(path) has a label column")
            }
            var names: [String]? = nil
            let values: [Int32]
            if let table = LabelTable.Spec(labels) {
                (values, names) = try LabelTable.labels(table, rows: set.count, rowNames: set.rowNames, data: path)
            } else {
                values = try loadLabels(labels)
            }
            guard values.count == set.count else {
                throw DatasetError.countMismatch(images: path, imageCount: set.count, labels: labels, labelCount: values.count)
            }
            var labelled = ImageSet(shape: set.shape, values: set.values, levels: set.levels, labels: values, source: set.source,
                                    kind: set.kind, observed: set.observed)
            labelled.storageName = set.storageName
            labelled.rowNames = set.rowNames
            labelled.labelNames = names
            set = labelled
        }
        return set
    }

    /// A mask for `data` from an NPY or CSV file: one 0 (missing) or 1
    /// (observed) per value, N·D of them in row-major order (a CSV mask with
    /// or without the data's header).
    public static func loadMask(_ path: String, for data: ImageSet) throws -> [UInt8] {
        let format = try DataFormat.of(path)
        let values: SampleValues
        switch format {
        case .csv:
            values = try loadCSV(path, options: ReadOptions()).values
        case .npy:
            values = try loadArray(path, format: format, levels: nil).values
        default:
            throw DatasetError.incompatible(path: path, detail: "is not a mask: name a .npy or .csv file of 0 and 1")
        }
        guard values.count == data.values.count else {
            throw DatasetError.incompatible(
                path: path, detail: "holds \(values.count) mask values, but \(data.source) has \(data.count) samples of "
                    + "\(data.shape.size) values (\(data.values.count)): a mask has one 0 or 1 per value")
        }
        var mask = [UInt8](repeating: 1, count: values.count)
        var bad: (Int, Float)? = nil
        values.forEachChunk { offset, chunk in
            for (i, v) in chunk.enumerated() {
                if v == 0 { mask[offset + i] = 0 } else if v != 1, bad == nil { bad = (offset + i, v) }
            }
        }
        if let (index, value) = bad {
            throw DatasetError.incompatible(
                path: path, detail: "value \(value) at sample \(index / data.shape.size), element \(index % data.shape.size): "
                    + "a mask holds 1 (observed) and 0 (missing)")
        }
        return mask
    }

    static func loadCSV(_ path: String, options: ReadOptions) throws -> ImageSet {
        try ImageSet(parsingCSV: try readPossiblyCompressedFile(path), path: path, options: options)
    }

    /// The samples of CSV bytes that came from `path` (a table's rows).
    public init(parsingCSV data: [UInt8], path: String, options: ReadOptions) throws {
        if options.levels != nil {
            throw DatasetError.incompatible(path: path, detail: "a CSV file holds real values: levels apply to integer arrays")
        }
        let table = try CSVTable(parsing: data, path: path, columns: options.columns, labelColumn: options.labelColumn)
        self.init(shape: ImageShape(channels: 1, height: 1, width: table.columnNames.count),
                  values: SampleValues(floats: table.values), labels: table.labels, source: path,
                  kind: .vectors(columns: table.columnNames))
    }

    static func loadArray(_ path: String, format: DataFormat, levels: Int?, counts: Bool = false) throws -> ImageSet {
        if let mapped = try loadMapped(path, format: format, levels: levels) { return mapped }
        // Gzipped: decompressed once into the cache and mapped from there (`DecompressionCache`).
        var copy: String? = nil
        if isGzipped(path), let cached = try DecompressionCache.decompressed(path) {
            if let mapped = try loadMapped(cached, format: format, levels: levels, source: path) { return mapped }
            copy = cached
        }
        return try ImageSet(parsingArray: try readPossiblyCompressedFile(copy ?? path), path: path, format: format,
                            levels: levels, counts: counts)
    }

    /// Whether the file at `path` starts with the gzip magic bytes.
    static func isGzipped(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 2)) == Data([0x1F, 0x8B])
    }

    /// Uncompressed .npy files of uint8 or little-endian float32 and
    /// uncompressed IDX files are mapped, not read (`MappedFile`): the
    /// values stay in the page cache, shared by the ranks of a node, and a
    /// rank's selection of them (its shard) is a list of rows. nil for any
    /// other file (read whole by `init(parsingArray:)`, which also gives
    /// every error). `VAE_MPI_NO_MMAP=1` turns mapping off.
    /// `source` names the data in messages when `path` is a cached copy of it.
    static func loadMapped(_ path: String, format: DataFormat, levels: Int?, source: String? = nil) throws -> ImageSet? {
        guard ProcessInfo.processInfo.environment["VAE_MPI_NO_MMAP"] == nil,
              let file = MappedFile(path), !file.isGzipped else { return nil }
        let path = source ?? path
        let dims: [Int]
        let values: SampleValues
        var resolvedLevels: Int? = nil
        if format == .npy {
            guard let h = try? NPYArray.header(file.prefix(1 << 20), totalBytes: file.byteCount, path: path) else { return nil }
            switch (h.kind, h.size, h.bigEndian) {
            case ("u", 1, _):
                values = SampleValues(element: .uint8, count: h.count, mapping: file, offset: h.start)
                resolvedLevels = levels ?? 256
            case ("f", 4, false) where levels == nil && h.start % 4 == 0:
                values = SampleValues(element: .float32, count: h.count, mapping: file, offset: h.start)
            default:
                return nil
            }
            dims = h.shape
        } else {
            let head = file.prefix(4)
            guard head.count == 4, head[0] == 0, head[1] == 0, head[2] == 0x08, head[3] >= 1 else { return nil }
            let rank = Int(head[3]), header = file.prefix(4 + 4 * rank)
            guard header.count == 4 + 4 * rank else { return nil }
            var d: [Int] = []
            for i in 0..<rank {
                let o = 4 + 4 * i
                d.append(Int(header[o]) << 24 | Int(header[o + 1]) << 16 | Int(header[o + 2]) << 8 | Int(header[o + 3]))
            }
            guard let total = checkedProduct(d), total <= 1 << 40, 4 + 4 * rank + total == file.byteCount else { return nil }
            values = SampleValues(element: .uint8, count: total, mapping: file, offset: 4 + 4 * rank)
            resolvedLevels = levels ?? 256
            dims = d
        }
        if let k = levels {
            guard (2...65536).contains(k) else { return nil }
            try values.checkBelow(levels: k, path: path)
        }
        return try ImageSet(dimensions: dims, values: values, levels: resolvedLevels, path: path)
    }

    /// The samples of IDX or NPY bytes that came from `path`, with their levels (see `ReadOptions.levels`).
    public init(parsingArray data: [UInt8], path: String, format: DataFormat, levels: Int?, counts: Bool = false) throws {
        precondition(format == .npy || format == .idx, "arrays are NPY or IDX")
        let dims: [Int]
        var values: SampleValues
        var resolvedLevels: Int? = nil
        var storageName: String? = nil
        if let levels, !(2...65536).contains(levels) {
            throw DatasetError.incompatible(path: path, detail: "the number of levels must be 2…65536 (got \(levels))")
        }
        func checkLevels(count: Int, _ value: (Int) -> Int64) throws {
            guard let k = levels else { return }
            for i in 0..<count where value(i) < 0 || value(i) >= Int64(k) {
                throw DatasetError.levelOutOfRange(path: path, index: i, value: value(i), levels: k)
            }
        }
        if format == .npy {
            let array = try NPYArray(parsing: data, path: path)
            dims = array.shape
            switch array.elements {
            case .bytes(let b):
                try checkLevels(count: b.count) { Int64(b[$0]) }
                values = SampleValues(bytes: b)
                resolvedLevels = levels ?? 256
            case .floats(let f):
                if levels != nil {
                    throw DatasetError.incompatible(path: path, detail: "holds floats: levels apply to integer arrays")
                }
                values = SampleValues(floats: f)
            case .integers(let v):
                values = try SampleValues(integers: v, levels: levels, counts: counts, path: path, dtype: array.dtype)
                resolvedLevels = levels
                if levels == nil { storageName = "\(array.dtype) counts" }
            }
        } else {
            let array = try IDXArray(parsing: data, path: path)
            dims = array.dimensions
            try checkLevels(count: array.bytes.count) { Int64(array.bytes[$0]) }
            values = SampleValues(bytes: array.bytes)
            resolvedLevels = levels ?? 256
        }
        try self.init(dimensions: dims, values: values, levels: resolvedLevels, path: path)
        self.storageName = storageName
    }

    /// Samples of an array of these dimensions (N×D, N×H×W or N×C×H×W).
    init(dimensions dims: [Int], values: SampleValues, levels resolvedLevels: Int?, path: String) throws {
        let shape: ImageShape
        var kind = ImageSet.Kind.images
        switch dims.count {
        case 2:
            let side = Int(Double(dims[1]).squareRoot().rounded())
            if side * side == dims[1] {
                shape = ImageShape(channels: 1, height: side, width: side)
            } else {
                shape = ImageShape(channels: 1, height: 1, width: dims[1])
                kind = .vectors(columns: nil)
            }
        case 3: shape = ImageShape(channels: 1, height: dims[1], width: dims[2])
        case 4: shape = ImageShape(channels: dims[1], height: dims[2], width: dims[3])
        default:
            throw DatasetError.badDimensions(
                path: path, detail: "samples need 2 (N×D), 3 (N×H×W) or 4 (N×C×H×W) dimensions, found \(dims)")
        }
        guard dims[0] > 0, shape.size > 0 else {
            throw DatasetError.badDimensions(path: path, detail: "no samples in \(dims)")
        }
        self.init(shape: shape, values: values, levels: resolvedLevels, source: path, kind: kind)
    }

    /// Integer labels from an IDX (1 dimension) or .npy (N or N×1) file.
    static func loadLabels(_ path: String) throws -> [Int32] {
        if let h5 = HDF5Path(path) { return try loadHDF5Labels(h5) }
        if CSVTable.isCSVPath(path) {
            throw DatasetError.incompatible(path: path, detail: "is a table: name the column of labels, \(path):COLUMN")
        }
        let data = try readPossiblyCompressedFile(path)
        if NPYArray.looksLikeNPY(data) {
            let array = try NPYArray(parsing: data, path: path)
            guard array.shape.count == 1 || (array.shape.count == 2 && array.shape[1] == 1) else {
                throw DatasetError.badDimensions(path: path, detail: "labels need shape (N,), found \(array.shape)")
            }
            switch array.elements {
            case .bytes(let b): return b.map { Int32($0) }
            case .integers(let v): return v.map { Int32(clamping: $0) }
            case .floats:
                throw DatasetError.incompatible(path: path, detail: "labels must be integers, found floats")
            }
        }
        let array = try IDXArray(parsing: data, path: path)
        guard array.dimensions.count == 1 else {
            throw DatasetError.badDimensions(path: path, detail: "a label file needs 1 dimension, found \(array.dimensions)")
        }
        return array.bytes.map { Int32($0) }
    }
}

/// Labels from a column of a CSV table (`FILE.csv:COLUMN`, raw or gzipped):
/// a per-sample covariate such as a cell's batch or a user's group, given as
/// text. The column's distinct values, in sorted order (numerically when all
/// are integers), are the categories 0…K−1 and name them. Rows are matched
/// to the samples by name when the data names its rows (a Matrix Market
/// file's barcodes, an interaction log's users) and another column of the
/// table holds every one of those names; otherwise the table has one row
/// per sample, in order. A sample may be named on several rows that agree
/// (an interaction log, one row per click, with a per-user column: the log
/// itself can be the table). The same table gives the same numbering to every
/// file it labels (training, test, and the subcommands' `--labels`).
public enum LabelTable {
    public struct Spec: Equatable, Sendable {
        public var path: String
        public var column: String

        /// `FILE.csv:COLUMN` (or `.csv.gz`); nil for other label files.
        public init?(_ text: String) {
            for suffix in [".csv.gz:", ".csv:"] {
                guard let range = text.range(of: suffix, options: [.backwards, .caseInsensitive]) else { continue }
                let column = String(text[range.upperBound...])
                guard !column.isEmpty else { return nil }
                path = String(text[..<text.index(before: range.upperBound)])
                self.column = column
                return
            }
            return nil
        }
    }

    /// The labels of `rows` samples (named `rowNames`, when the data has
    /// names) and the categories' names. `data` names the data file in errors.
    public static func labels(_ spec: Spec, rows: Int, rowNames: [String]?, data: String) throws -> ([Int32], [String]) {
        try labels(parsing: try readPossiblyCompressedFile(spec.path), spec, rows: rows, rowNames: rowNames, data: data)
    }

    /// The same from the table's bytes (`spec.path` names them in errors).
    public static func labels(parsing bytes: [UInt8], _ spec: Spec, rows: Int, rowNames: [String]?,
                              data: String) throws -> ([Int32], [String]) {
        let table = try CSVRecords(parsing: bytes, path: spec.path)
        guard let header = table.header else {
            throw DatasetError.incompatible(path: spec.path, detail: "has no header row: a label table names its columns "
                                            + "(the first row, with at least one field that is not a number)")
        }
        guard let column = header.firstIndex(of: spec.column) else {
            throw DatasetError.incompatible(path: spec.path, detail: "has no column \"\(spec.column)\" (its columns: "
                                            + header.prefix(20).joined(separator: ", ") + (header.count > 20 ? ", …" : "") + ")")
        }
        for (i, row) in table.rows.enumerated() where row.count != header.count {
            throw DatasetError.incompatible(path: spec.path, detail: "row \(i + 1) has \(row.count) fields, the header \(header.count)")
        }
        let values = table.rows.map { $0[column].trimmingCharacters(in: .whitespaces) }
        if let empty = values.firstIndex(of: "") {
            throw DatasetError.incompatible(path: spec.path, detail: "row \(empty + 1) has no value in column \"\(spec.column)\"")
        }
        // Categories: numerically when every value is an integer, else as text.
        let distinct = Array(Set(values))
        let categories = distinct.allSatisfy { Int($0) != nil }
            ? distinct.sorted { Int($0)! < Int($1)! } : distinct.sorted()
        guard categories.count <= 100_000 else {
            throw DatasetError.incompatible(path: spec.path, detail: "column \"\(spec.column)\" has \(categories.count) distinct "
                                            + "values: labels are categories (at most 100,000)")
        }
        let index = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($1, Int32($0)) })
        // Match by name: a key column holding every row name of the data.
        if let rowNames, !rowNames.isEmpty {
            let wanted = Set(rowNames)
            for key in header.indices where key != column {
                let keys = table.rows.map { $0[key].trimmingCharacters(in: .whitespaces) }
                guard wanted.isSubset(of: keys) else { continue }
                var row = [String: Int]()
                for (i, k) in keys.enumerated() where row[k] == nil { row[k] = i }
                // A sample named on several rows (an interaction log: one row per click) must have one value there.
                if let repeated = keys.enumerated().first(where: {
                    wanted.contains($0.element) && row[$0.element] != $0.offset && values[row[$0.element]!] != values[$0.offset]
                }) {
                    let first = row[repeated.element]!
                    throw DatasetError.incompatible(path: spec.path, detail: "gives sample \"\(repeated.element)\" two values "
                        + "of \"\(spec.column)\": \"\(values[first])\" (row \(first + 1)) and \"\(values[repeated.offset])\" "
                        + "(row \(repeated.offset + 1)); a covariate has one value per sample")
                }
                return (rowNames.map { index[values[row[$0]!]]! }, categories)
            }
        }
        guard values.count == rows else {
            let names = rowNames.map { names in
                "; no column of it holds all of \(data)'s \(names.count) sample names (the first: \"\(names[0])\")"
            } ?? ""
            throw DatasetError.incompatible(path: spec.path, detail: "has \(values.count) rows but \(data) has \(rows) samples\(names)")
        }
        return (values.map { index[$0]! }, categories)
    }
}
