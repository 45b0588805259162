import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TensorCore

/// A data set's values as they were stored: unsigned bytes (8-bit images,
/// integer levels up to 256), 16-bit words (levels up to 65536) or float32.
/// Integer data stays integer (a quarter or half the memory of floats, and
/// exact levels for discrete likelihoods) until a batch is made.
///
/// Every operation goes through one conversion (`convert`), the only place
/// that knows the element types: a new type is a case and a loop there.
public struct SampleValues: Sendable {
    public enum Element: String, Sendable {
        case uint8
        case uint16
        case float32

        public var size: Int {
            switch self {
            case .uint8: return 1
            case .uint16: return 2
            case .float32: return 4
            }
        }

        public var isInteger: Bool { self != .float32 }
        /// NumPy's descr ("|u1", "<u2", "<f4").
        public var numpyDescr: String {
            switch self {
            case .uint8: return "|u1"
            case .uint16: return "<u2"
            case .float32: return "<f4"
            }
        }
    }

    public let element: Element
    /// Number of values.
    public let count: Int
    let storage: RawStorage
    /// Rows kept sparse (interactions, count matrices): `storage` is unused
    /// and every read goes through the rows (`element` is float32).
    public private(set) var sparse: SparseRows? = nil
    /// A selection of rows of a mapped file's values, read through
    /// (`selecting(rows:width:)` on mapped values): no copy.
    private(set) var view: RowView? = nil
    /// What whole scans of these values found (range, integrality), kept so
    /// that asking again does not read a large (mapped) file again. The
    /// values never change once made, and every initialiser starts a new
    /// cache (a selection is new values).
    private var scans = ScanCache()

    final class ScanCache: Sendable {
        let summary = Mutex<ValueSummary?>(nil)
        let integral = Mutex<Bool?>(nil)
    }

    /// What one pass over the values finds: whether any is NaN (missing) or
    /// infinite, and the smallest and largest value (unscaled, NaN ignored;
    /// nil when there are none). Start-up asks all three of a large file
    /// (the missing-value mask, the finite check, the likelihood's range
    /// check and the header), so they come from one read of it.
    public struct ValueSummary: Sendable, Equatable {
        public var hasNaN: Bool
        public var hasInfinite: Bool
        public var range: ClosedRange<Float>?
    }

    struct RowView: Sendable {
        var rows: [Int]
        var width: Int
    }

    public init(bytes: [UInt8]) {
        element = .uint8
        count = bytes.count
        storage = bytes.withUnsafeBytes { RawStorage(copying: $0) }
    }

    public init(words: [UInt16]) {
        element = .uint16
        count = words.count
        storage = words.withUnsafeBytes { RawStorage(copying: $0) }
    }

    public init(floats: [Float]) {
        element = .float32
        count = floats.count
        storage = floats.withUnsafeBytes { RawStorage(copying: $0) }
    }

    init(element: Element, count: Int, storage: RawStorage) {
        self.element = element
        self.count = count
        self.storage = storage
        sparse = nil
    }

    /// Sparse rows: N·D values, most of them 0, held as CSR.
    public init(sparse rows: SparseRows) {
        element = .float32
        count = rows.rowCount * rows.width
        storage = RawStorage(byteCount: 0)
        sparse = rows
    }

    /// The values of a mapped file (`MappedFile`) from byte `offset`: read
    /// in place, never copied whole.
    init(element: Element, count: Int, mapping: MappedFile, offset: Int) {
        precondition(offset + count * element.size <= mapping.byteCount, "a mapping too short for its values")
        self.element = element
        self.count = count
        storage = RawStorage(mapping: mapping, offset: offset, byteCount: count * element.size)
    }

    /// Whether the values are read in place from a mapped file.
    public var isMapped: Bool { storage.mapping != nil }

    /// Bytes of this process's own memory the values take (a mapped file's
    /// pages are the page cache's, shared by every process that maps it).
    public var privateBytes: Int {
        if let sparse { return sparse.nonzeroCount * 8 + (sparse.rowCount + 1) * 8 }
        if let view { return view.rows.count * 8 }
        return isMapped ? 0 : count * element.size
    }

    /// Asks the kernel to read these rows of a mapped file ahead
    /// (asynchronously); nothing for values in memory.
    public func prefetch(rows: Range<Int>, width: Int) {
        guard let mapping = storage.mapping, !rows.isEmpty else { return }
        let fileRows = view.map { v in rows.map { v.rows[$0] } } ?? Array(rows)
        let rowBytes = width * element.size, page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var start = 0
        while start < fileRows.count {
            var end = start + 1
            while end < fileRows.count && fileRows[end] == fileRows[end - 1] + 1 { end += 1 }
            let from = storage.base - UnsafeMutableRawPointer(mutating: mapping.base) + fileRows[start] * rowBytes
            let to = from + (end - start) * rowBytes
            let aligned = from / page * page
            madvise(UnsafeMutableRawPointer(mutating: mapping.base + aligned), to - aligned, MADV_WILLNEED)
            start = end
        }
    }

    /// Whether the values are held as sparse rows.
    public var isSparse: Bool { sparse != nil }

    /// Values [start, start + n) as Float, each times `scale` if given,
    /// into `out`. The one place that reads each element type.
    public func convert(_ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>, scale: Float? = nil) {
        precondition(start >= 0 && n >= 0 && start + n <= count, "values \(start)..<\(start + n) of \(count)")
        if let sparse {
            sparse.densify(start, n, into: out, scale: scale)
            return
        }
        if let view {
            // Row by row through the selection.
            var done = 0
            while done < n {
                let e = start + done, r = e / view.width, j = e % view.width
                let m = Swift.min(view.width - j, n - done)
                convertStored(view.rows[r] * view.width + j, m, into: out + done, scale: scale)
                done += m
            }
            return
        }
        convertStored(start, n, into: out, scale: scale)
    }

    /// Stored values [start, start + n) as Float (the storage itself, no view).
    private func convertStored(_ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>, scale: Float?) {
        let raw = storage.base + start * element.size
        switch element {
        case .uint8:
            let s = raw.assumingMemoryBound(to: UInt8.self)
            if let scale { for j in 0..<n { out[j] = Float(s[j]) * scale } } else { for j in 0..<n { out[j] = Float(s[j]) } }
        case .uint16:
            let s = raw.assumingMemoryBound(to: UInt16.self)
            if let scale { for j in 0..<n { out[j] = Float(s[j]) * scale } } else { for j in 0..<n { out[j] = Float(s[j]) } }
        case .float32:
            let s = raw.assumingMemoryBound(to: Float.self)
            if let scale { for j in 0..<n { out[j] = s[j] * scale } } else { out.update(from: s, count: n) }
        }
    }

    /// Calls `body` with consecutive chunks of the values as Float (unscaled).
    public func forEachChunk(_ body: (_ offset: Int, _ values: UnsafeBufferPointer<Float>) throws -> Void) rethrows {
        let chunk = 1 << 16
        var buffer = [Float](repeating: 0, count: Swift.min(chunk, count))
        var start = 0
        while start < count {
            let n = Swift.min(chunk, count - start)
            try buffer.withUnsafeMutableBufferPointer { b in
                convert(start, n, into: b.baseAddress!)
                try body(start, UnsafeBufferPointer(rebasing: b[0..<n]))
            }
            start += n
        }
    }

    /// The values of rows `rows` (each `width` values), in that order.
    public func selecting(rows: [Int], width: Int) -> SampleValues {
        if let sparse { return SampleValues(sparse: sparse.selecting(rows)) }
        if isMapped {
            // A mapped file stays in the page cache: the selection is a list of rows.
            for r in rows { precondition(r >= 0 && (r + 1) * width <= count, "row \(r) of \(count / Swift.max(width, 1))") }
            var selected = SampleValues(element: element, count: rows.count * width, storage: storage)
            selected.view = RowView(rows: view.map { v in rows.map { v.rows[$0] } } ?? rows, width: width)
            precondition(view == nil || view!.width == width, "a view of another width")
            return selected
        }
        let rowBytes = width * element.size
        let storage = RawStorage(byteCount: rows.count * rowBytes)
        for (i, r) in rows.enumerated() {
            precondition(r >= 0 && (r + 1) * width <= count, "row \(r) of \(count / Swift.max(width, 1))")
            (storage.base + i * rowBytes).copyMemory(from: self.storage.base + r * rowBytes, byteCount: rowBytes)
        }
        return SampleValues(element: element, count: rows.count * width, storage: storage)
    }

    /// The smallest and largest value (unscaled), ignoring NaN; nil when
    /// there are none.
    public var range: ClosedRange<Float>? { summary.range }

    /// NaN, infinities and the range, from one pass (kept once made).
    public var summary: ValueSummary {
        if let known = scans.summary.withLock({ $0 }) { return known }
        var nan = false, infinite = false
        var lo = Float.infinity, hi = -Float.infinity
        func scan(_ values: UnsafeBufferPointer<Float>) {
            for v in values {
                if v.isNaN {
                    nan = true
                } else {
                    infinite = infinite || v.isInfinite
                    lo = Swift.min(lo, v)
                    hi = Swift.max(hi, v)
                }
            }
        }
        if let sparse {
            // The stored values, and the zeros between them.
            if sparse.nonzeroCount < count { (lo, hi) = (0, 0) }
            sparse.values.withUnsafeBufferPointer(scan)
        } else {
            forEachChunk { _, values in scan(values) }
        }
        let found = ValueSummary(hasNaN: nan, hasInfinite: infinite, range: lo <= hi ? lo...hi : nil)
        scans.summary.withLock { $0 = found }
        return found
    }

    /// Whether every value (NaN aside) is a whole number.
    public var isIntegral: Bool {
        if element.isInteger { return true }
        if let known = scans.integral.withLock({ $0 }) { return known }
        let found: Bool = {
            if let sparse { return sparse.isIntegral }
            var integral = true
            forEachChunk { _, chunk in
                guard integral else { return }
                integral = chunk.allSatisfy { $0.isNaN || $0 == $0.rounded() }
            }
            return integral
        }()
        scans.integral.withLock { $0 = found }
        return found
    }

    /// The index of the first value that is NaN (a missing value) or
    /// infinite, with which.
    public func firstNonFinite() -> (index: Int, value: Float)? {
        guard element == .float32 else { return nil }
        if let sparse { return sparse.firstNonFinite() }
        var found: (Int, Float)? = nil
        forEachChunk { offset, values in
            guard found == nil else { return }
            if let i = values.firstIndex(where: { !$0.isFinite }) { found = (offset + i, values[i]) }
        }
        return found
    }

    /// All values as Float (unscaled).
    public var floats: [Float] {
        [Float](unsafeUninitializedCapacity: count) { b, n in
            if count > 0 { convert(0, count, into: b.baseAddress!) }
            n = count
        }
    }

    /// The values' bytes, little-endian, in their own element type (see `Element.numpyDescr`).
    public var rawBytes: [UInt8] {
        if sparse != nil { return floats.withUnsafeBytes { Array($0) } }
        if let view {
            let rowBytes = view.width * element.size
            var bytes = [UInt8]()
            bytes.reserveCapacity(view.rows.count * rowBytes)
            for r in view.rows { bytes += UnsafeRawBufferPointer(start: storage.base + r * rowBytes, count: rowBytes) }
            return bytes
        }
        return Array(UnsafeRawBufferPointer(start: storage.base, count: count * element.size))
    }
}

/// Rows of a matrix, most of whose values are 0, in compressed sparse row
/// form (CSR): row r's nonzero values are `values[rowStarts[r] ..<
/// rowStarts[r + 1]]`, in the columns `columns[…]`, increasing.
public struct SparseRows: Sendable, Equatable {
    public let width: Int
    public let rowStarts: [Int]
    public let columns: [Int32]
    public let values: [Float]

    public var rowCount: Int { rowStarts.count - 1 }
    public var nonzeroCount: Int { values.count }

    public init(width: Int, rowStarts: [Int], columns: [Int32], values: [Float]) {
        precondition(rowStarts.first == 0 && rowStarts.last == columns.count && columns.count == values.count,
                     "CSR arrays disagree")
        self.width = width
        self.rowStarts = rowStarts
        self.columns = columns
        self.values = values
    }

    /// From (row, column, value) triplets, any order; repeated cells add up
    /// (interaction logs may list a pair twice).
    public init(rows: Int, width: Int, triplets: [(row: Int32, column: Int32, value: Float)]) {
        var counts = [Int](repeating: 0, count: rows + 1)
        for t in triplets { counts[Int(t.row) + 1] += 1 }
        for r in 0..<rows { counts[r + 1] += counts[r] }
        var next = counts
        var cells = [(Int32, Float)](repeating: (0, 0), count: triplets.count)
        for t in triplets {
            cells[next[Int(t.row)]] = (t.column, t.value)
            next[Int(t.row)] += 1
        }
        var starts = [0], columns = [Int32](), values = [Float]()
        columns.reserveCapacity(cells.count)
        values.reserveCapacity(cells.count)
        for r in 0..<rows {
            let row = cells[counts[r] ..< counts[r + 1]].sorted { $0.0 < $1.0 }
            for (c, v) in row {
                if let last = columns.last, columns.count > starts[r], last == c { values[values.count - 1] += v } else {
                    columns.append(c)
                    values.append(v)
                }
            }
            starts.append(columns.count)
        }
        self.init(width: width, rowStarts: starts, columns: columns, values: values)
    }

    /// Values [start, start + n) of the dense row-major matrix.
    func densify(_ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>, scale: Float?) {
        out.initialize(repeating: 0, count: n)
        guard n > 0, width > 0 else { return }
        let end = start + n
        for r in (start / width) ... ((end - 1) / width) {
            let base = r * width
            for k in rowStarts[r] ..< rowStarts[r + 1] {
                let i = base + Int(columns[k])
                if i >= start && i < end { out[i - start] = scale.map { values[k] * $0 } ?? values[k] }
            }
        }
    }

    /// The rows at `indices`, in that order.
    func selecting(_ indices: [Int]) -> SparseRows {
        var starts = [0], columns = [Int32](), values = [Float]()
        for r in indices {
            precondition(r >= 0 && r < rowCount, "row \(r) of \(rowCount)")
            columns += self.columns[rowStarts[r] ..< rowStarts[r + 1]]
            values += self.values[rowStarts[r] ..< rowStarts[r + 1]]
            starts.append(columns.count)
        }
        return SparseRows(width: width, rowStarts: starts, columns: columns, values: values)
    }

    func firstNonFinite() -> (index: Int, value: Float)? {
        for r in 0..<rowCount {
            for k in rowStarts[r] ..< rowStarts[r + 1] where !values[k].isFinite {
                return (r * width + Int(columns[k]), values[k])
            }
        }
        return nil
    }

    /// Whether every stored value is a whole number.
    public var isIntegral: Bool { values.allSatisfy { $0 == $0.rounded() } }

    /// Each row's stored cells: (columns, values).
    public func row(_ r: Int) -> (columns: ArraySlice<Int32>, values: ArraySlice<Float>) {
        (columns[rowStarts[r] ..< rowStarts[r + 1]], values[rowStarts[r] ..< rowStarts[r + 1]])
    }
}

/// Bytes this process owns, 64-byte aligned, immutable once filled.
final class RawStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    /// The mapped file the bytes are in (read only), when they are not this process's own.
    let mapping: MappedFile?

    init(byteCount: Int) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
        mapping = nil
    }

    init(mapping: MappedFile, offset: Int, byteCount: Int) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer(mutating: mapping.base + offset)
        self.mapping = mapping
    }

    convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(byteCount: bytes.count)
        if let source = bytes.baseAddress { base.copyMemory(from: source, byteCount: bytes.count) }
    }

    deinit { if mapping == nil { base.deallocate() } }
}

