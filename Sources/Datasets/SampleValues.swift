import Foundation
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
    }

    /// Values [start, start + n) as Float, each times `scale` if given,
    /// into `out`. The one place that reads each element type.
    public func convert(_ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>, scale: Float? = nil) {
        precondition(start >= 0 && n >= 0 && start + n <= count, "values \(start)..<\(start + n) of \(count)")
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
    public var range: ClosedRange<Float>? {
        var lo = Float.infinity, hi = -Float.infinity
        forEachChunk { _, values in
            for v in values where !v.isNaN {
                lo = Swift.min(lo, v)
                hi = Swift.max(hi, v)
            }
        }
        return lo <= hi ? lo...hi : nil
    }

    /// The index of the first value that is NaN (a missing value) or
    /// infinite, with which.
    public func firstNonFinite() -> (index: Int, value: Float)? {
        guard element == .float32 else { return nil }
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
        Array(UnsafeRawBufferPointer(start: storage.base, count: count * element.size))
    }
}

/// Bytes this process owns, 64-byte aligned, immutable once filled.
final class RawStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) {
        self.byteCount = byteCount
        base = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 64)
    }

    convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(byteCount: bytes.count)
        if let source = bytes.baseAddress { base.copyMemory(from: source, byteCount: bytes.count) }
    }

    deinit { base.deallocate() }
}

