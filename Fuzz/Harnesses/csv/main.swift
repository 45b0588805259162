import Datasets

/// CSV tables: any bytes give a table or an error naming the line and column, never a trap;
/// with every column, and with chosen columns and a label column taken from the header;
/// and as a label table.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    func use(_ options: ReadOptions) {
        guard let set = try? ImageSet(parsingCSV: bytes, path: "fuzz.csv", options: options) else { return }
        _ = set.batch([0, set.count - 1])
        _ = Standardization(fitting: set)
        try? set.validateFinite()
    }
    use(ReadOptions())
    // Columns named by the first row's fields, when it has them.
    if let table = try? CSVTable(parsing: bytes, path: "fuzz.csv"), table.columnNames.count >= 2 {
        let names = table.columnNames
        use(ReadOptions(columns: [names[names.count - 1], names[0]]))
        use(ReadOptions(columns: Array(names.dropLast()), labelColumn: names[names.count - 1]))
    }
    // As a label table (--covariate FILE.csv:COLUMN): its first column's values as the samples' names, or in order.
    if let records = try? CSVRecords(parsing: bytes, path: "fuzz.csv"), let header = records.header,
       let spec = LabelTable.Spec("fuzz.csv:" + header[header.count - 1]) {
        let names = records.rows.compactMap(\.first)
        _ = try? LabelTable.labels(parsing: bytes, spec, rows: records.rows.count, rowNames: nil, data: "fuzz")
        _ = try? LabelTable.labels(parsing: bytes, spec, rows: names.count, rowNames: names.isEmpty ? nil : names, data: "fuzz")
        _ = try? LabelTable.labels(parsing: bytes, spec, rows: 1, rowNames: ["a"], data: "fuzz")
    }
    return 0
}
