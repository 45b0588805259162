import Datasets

/// CSV tables: any bytes give a table or an error naming the line and column, never a trap;
/// with every column, and with chosen columns and a label column taken from the header.
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
    return 0
}
