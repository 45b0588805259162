import CHDF5Reader
import Foundation
import TensorCore

/// A dataset inside an HDF5 file, named as `file.h5:/path/to/dataset`.
/// Read through libhdf5 (a small C layer, `CHDF5Reader`): shapes (N, D),
/// (N, H, W) and (N, C, H, W); uint8, other integers (with their levels, or
/// as counts), float32 and float64. A contiguous, uncompressed dataset of
/// uint8 or little-endian float32 is mapped in place (as .npy files are:
/// one copy per node in the page cache); others are read.
public struct HDF5Path: Equatable, Sendable {
    public var file: String
    public var dataset: String

    static let extensions = [".h5", ".hdf5", ".hdf", ".he5"]

    /// `file.h5:/path` → (file.h5, /path); nil for paths that name no HDF5 file.
    public init?(_ path: String) {
        for ext in Self.extensions {
            if let r = path.range(of: ext + ":") {
                file = String(path[..<r.lowerBound]) + ext
                dataset = String(path[r.upperBound...])
                return
            }
            if path.lowercased().hasSuffix(ext) {
                file = path
                dataset = ""
                return
            }
        }
        return nil
    }

    public var description: String { dataset.isEmpty ? file : file + ":" + dataset }
}

extension ImageSet {
    static func hdf5Error(_ path: HDF5Path, _ error: [CChar]) -> DatasetError {
        let text = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return DatasetError.incompatible(path: path.file, detail: text)
    }

    static func describe(_ path: HDF5Path) throws -> vae_h5_info {
        guard !path.dataset.isEmpty else {
            throw DatasetError.incompatible(path: path.file, detail: "is an HDF5 file: name the dataset too, as \(path.file):/images")
        }
        guard FileManager.default.fileExists(atPath: path.file) else { throw DatasetError.notFound(path: path.file, hint: "") }
        guard vae_h5_is_hdf5(path.file) == 1 else {
            throw DatasetError.incompatible(path: path.file, detail: "is not an HDF5 file")
        }
        var info = vae_h5_info()
        var error = [CChar](repeating: 0, count: 512)
        guard vae_h5_describe(path.file, path.dataset, &info, &error, Int32(error.count)) == 0 else {
            throw hdf5Error(path, error)
        }
        return info
    }

    static func dimensions(_ info: vae_h5_info) -> [Int] {
        withUnsafeBytes(of: info.dims) { raw in (0..<Int(info.rank)).map { Int(raw.load(fromByteOffset: $0 * 8, as: Int64.self)) } }
    }

    /// Rows [0, N) of the dataset converted to `mode` (0 bytes, 1 float32, 2 int64), read in blocks.
    static func readAll<T>(_ path: HDF5Path, dims: [Int], mode: Int32, as: T.Type) throws -> [T] {
        let total = try checkedSize(path, dims: dims, elementSize: MemoryLayout<T>.size)
        var values = [T](unsafeUninitializedCapacity: total) { _, n in n = total }
        var filled = 0
        try values.withUnsafeMutableBytes { out in
            try readBlocks(path, dims: dims, mode: mode, as: T.self) { block in
                out.baseAddress!.advanced(by: filled).copyMemory(from: block.baseAddress!, byteCount: block.count)
                filled += block.count
            }
        }
        return values
    }

    /// The number of values of `dims`, checked to fit within what the file's
    /// bytes can decompress to (deflate expands at most about 1032:1), so
    /// that a damaged header cannot ask for terabytes, and, when they are to
    /// be held in memory (`inMemory`), in half of it. A copy in the cache is
    /// written and mapped, so it may be larger than memory.
    static func checkedSize(_ path: HDF5Path, dims: [Int], elementSize: Int, inMemory: Bool = true) throws -> Int {
        guard let total = checkedProduct(dims), checkedProduct(Array(dims.dropFirst())) != nil else {
            throw DatasetError.badDimensions(path: path.description, detail: "\(dims) holds more elements than this machine can address")
        }
        let bytes = total.multipliedReportingOverflow(by: elementSize)
        let fileBytes = (try? FileManager.default.attributesOfItem(atPath: path.file)[.size] as? Int) ?? 0
        let fileLimit = fileBytes.multipliedReportingOverflow(by: 1100).partialValue
        let limit = inMemory ? min(Int(ProcessInfo.processInfo.physicalMemory / 2), fileLimit) : fileLimit
        guard !bytes.overflow, bytes.partialValue <= limit else {
            throw DatasetError.badDimensions(path: path.description, detail: "\(dims) of \(elementSize)-byte values "
                + (inMemory ? "would take more memory than this machine has for it, or than the file can hold (\(fileBytes) bytes); "
                            + "store the dataset contiguous and uncompressed (h5repack -l CONTI), which is mapped, not read"
                            : "are more than the file (\(fileBytes) bytes) can hold: a damaged header"))
        }
        return total
    }

    /// Integer samples converted block by block to what training keeps
    /// (`SampleValues.integerElement`), checked by `SampleValues.checkIntegers`
    /// (a bad value named by its index in the dataset), handed to `emit` in order.
    static func convertIntegers(_ path: HDF5Path, dims: [Int], levels: Int?,
                                _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        var bytes: [UInt8] = [], words: [UInt16] = [], floats: [Float] = []
        try readBlocks(path, dims: dims, mode: 2, as: Int64.self) { raw in
            let v = raw.bindMemory(to: Int64.self)
            try SampleValues.checkIntegers(v, levels: levels, path: path.description, offset: offset)
            switch SampleValues.integerElement(levels: levels) {
            case .uint8:
                bytes.removeAll(keepingCapacity: true)
                bytes.append(contentsOf: v.lazy.map { UInt8($0) })
                try bytes.withUnsafeBytes(emit)
            case .uint16:
                words.removeAll(keepingCapacity: true)
                words.append(contentsOf: v.lazy.map { UInt16($0) })
                try words.withUnsafeBytes(emit)
            case .float32:
                floats.removeAll(keepingCapacity: true)
                floats.append(contentsOf: v.lazy.map { Float($0) })
                try floats.withUnsafeBytes(emit)
            }
            offset += v.count
        }
    }

    /// Integer samples, with their levels (K) or as counts: copied once into
    /// the decompression cache, converted (keyed by K, whose check the copy
    /// passed) and mapped by every rank; else read by this process, converted
    /// block by block. What is held is never the whole dataset as 64-bit
    /// integers.
    static func readIntegers(_ path: HDF5Path, dims: [Int], levels: Int?, counts: Bool, dtype: String) throws -> SampleValues {
        guard levels != nil || counts else { throw DatasetError.integersNeedLevels(path: path.description, dtype: dtype) }
        let element = SampleValues.integerElement(levels: levels)
        let what = levels.map { "\(element.rawValue) below \($0)" } ?? "float32 counts"
        if let cached = try cachedCopy(path, dims: dims, element: element, what: what, produce: { emit in
            try convertIntegers(path, dims: dims, levels: levels, emit)
        }) {
            return cached
        }
        let total = try checkedSize(path, dims: dims, elementSize: element.size)
        func collect<T>(_: T.Type) throws -> [T] {
            var out = [T]()
            out.reserveCapacity(total)
            try convertIntegers(path, dims: dims, levels: levels) { out.append(contentsOf: $0.bindMemory(to: T.self)) }
            return out
        }
        switch element {
        case .uint8: return SampleValues(bytes: try collect(UInt8.self))
        case .uint16: return SampleValues(words: try collect(UInt16.self))
        case .float32: return SampleValues(floats: try collect(Float.self))
        }
    }

    /// Hands the dataset's rows to `body` in order, converted to `mode`, in
    /// blocks of about 64 MB read into one reused buffer (libhdf5's
    /// conversion buffers stay small, and so does what the caller holds).
    static func readBlocks<T>(_ path: HDF5Path, dims: [Int], mode: Int32, as: T.Type,
                              _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let rowSize = checkedProduct(Array(dims.dropFirst()))!
        guard rowSize > 0, dims[0] > 0 else { return }
        let block = Swift.max(1, (64 << 20) / Swift.max(rowSize * MemoryLayout<T>.size, 1))
        var buffer = [T](unsafeUninitializedCapacity: Swift.min(block, dims[0]) * rowSize) { _, n in
            n = Swift.min(block, dims[0]) * rowSize
        }
        var error = [CChar](repeating: 0, count: 512)
        var first = 0
        while first < dims[0] {
            let count = Swift.min(block, dims[0] - first)
            try buffer.withUnsafeMutableBytes { b in
                guard vae_h5_read_rows(path.file, path.dataset, Int64(first), Int64(count), mode, b.baseAddress!,
                                       &error, Int32(error.count)) == 0 else { throw hdf5Error(path, error) }
                try body(UnsafeRawBufferPointer(rebasing: b[0 ..< count * rowSize * MemoryLayout<T>.size]))
            }
            first += count
        }
    }

    /// The samples of an HDF5 dataset, with their levels (see `ReadOptions`).
    static func loadHDF5(_ path: HDF5Path, levels: Int?, counts: Bool) throws -> ImageSet {
        let info = try describe(path)
        let dims = dimensions(info)
        guard dims.allSatisfy({ $0 >= 0 }) else {
            throw DatasetError.badDimensions(path: path.description, detail: "dimensions \(dims) are not valid")
        }
        guard (2...4).contains(dims.count) else {
            throw DatasetError.badDimensions(path: path.description,
                                             detail: "samples need 2 (N×D), 3 (N×H×W) or 4 (N×C×H×W) dimensions, found \(dims)")
        }
        if let levels, !(2...65536).contains(levels) {
            throw DatasetError.incompatible(path: path.description, detail: "the number of levels must be 2…65536 (got \(levels))")
        }
        let isFloat = info.type_class == 1
        let isBytes = !isFloat && info.size == 1 && info.is_signed == 0
        let dtype = isFloat ? "float\(info.size * 8)" : (info.is_signed != 0 ? "int" : "uint") + "\(info.size * 8)"
        if isFloat && levels != nil {
            throw DatasetError.incompatible(path: path.description, detail: "holds floats: levels apply to integer arrays")
        }
        var values: SampleValues
        var resolvedLevels: Int? = nil
        var storageName: String? = nil
        // Contiguous, uncompressed uint8 or little-endian float32: mapped in place.
        if info.offset >= 0, ProcessInfo.processInfo.environment["VAE_MPI_NO_MMAP"] == nil,
           isBytes || (isFloat && info.size == 4 && info.little_endian != 0 && info.offset % 4 == 0),
           let total = checkedProduct(dims), let file = MappedFile(path.file),
           let end = checkedOffset(Int(info.offset), plus: total, times: Int(info.size)), end <= file.byteCount {
            values = SampleValues(element: isBytes ? .uint8 : .float32, count: total, mapping: file, offset: Int(info.offset))
        } else if isBytes || isFloat, let cached = try cachedCopy(
            path, dims: dims, element: isBytes ? .uint8 : .float32, what: isBytes ? "uint8" : "float32",
            produce: { emit in
                if isBytes { try readBlocks(path, dims: dims, mode: 0, as: UInt8.self, emit) }
                else { try readBlocks(path, dims: dims, mode: 1, as: Float.self, emit) }
            }) {
            // Chunked, compressed or another float type: read once into the cache (as uint8 or float32) and mapped.
            values = cached
        } else if isBytes {
            values = SampleValues(bytes: try readAll(path, dims: dims, mode: 0, as: UInt8.self))
        } else if isFloat {
            values = SampleValues(floats: try readAll(path, dims: dims, mode: 1, as: Float.self))
        } else {
            values = try readIntegers(path, dims: dims, levels: levels, counts: counts, dtype: dtype)
            resolvedLevels = levels
            if levels == nil { storageName = "\(dtype) counts" }
        }
        if isBytes {
            if let k = levels { try values.checkBelow(levels: k, path: path.description) }
            resolvedLevels = levels ?? 256
        }
        var set = try ImageSet(dimensions: dims, values: values, levels: resolvedLevels, path: path.description)
        set.storageName = storageName ?? "HDF5 \(dtype)"
        return set
    }

    /// A dataset that cannot be mapped in place (chunked, compressed,
    /// float64, big-endian, integers), as `produce` makes its values
    /// (`element`, `what` naming them in the cache's key): written once by one
    /// process into the cache folder (`DecompressionCache`), block by block,
    /// and mapped from there, so that the ranks of a node share one copy. It
    /// may be larger than memory; it is checked only against what the file
    /// can decompress to. Nil when caching is off, the folder cannot take it,
    /// or the dataset is empty (the caller then reads it).
    static func cachedCopy(_ path: HDF5Path, dims: [Int], element: SampleValues.Element, what: String,
                           produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> SampleValues? {
        guard ProcessInfo.processInfo.environment["VAE_MPI_NO_MMAP"] == nil else { return nil }
        let total = try checkedSize(path, dims: dims, elementSize: element.size, inMemory: false)
        guard total > 0 else { return nil }
        let name = (path.file as NSString).lastPathComponent + "-" + path.dataset.map { $0 == "/" ? "_" : $0 }
        guard let copy = try DecompressionCache.cached(path.file, variant: path.dataset + " as " + what, name: String(name),
                                                       produce: produce),
              let file = MappedFile(copy), file.byteCount == total * element.size else { return nil }
        return SampleValues(element: element, count: total, mapping: file, offset: 0)
    }

    /// Integer labels from an HDF5 dataset of shape (N) or (N, 1).
    static func loadHDF5Labels(_ path: HDF5Path) throws -> [Int32] {
        let info = try describe(path)
        let dims = dimensions(info)
        guard dims.allSatisfy({ $0 >= 0 }) else {
            throw DatasetError.badDimensions(path: path.description, detail: "dimensions \(dims) are not valid")
        }
        guard info.type_class == 0 else {
            throw DatasetError.incompatible(path: path.description, detail: "labels must be integers, found floats")
        }
        guard dims.count == 1 || (dims.count == 2 && dims[1] == 1) else {
            throw DatasetError.badDimensions(path: path.description, detail: "labels need shape (N,), found \(dims)")
        }
        return try readAll(path, dims: dims, mode: 2, as: Int64.self).map { Int32(clamping: $0) }
    }
}
