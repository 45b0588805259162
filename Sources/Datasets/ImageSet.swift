import TensorCore

/// A set of images (and optional integer labels) held in memory in its
/// source's element type: bytes stay bytes (a quarter of the memory of
/// floats) and are scaled to [0, 1] per batch.
public struct ImageSet: Sendable {
    public enum Pixels: Sendable {
        /// Unsigned bytes, scaled by 1/255 when batched.
        case bytes([UInt8])
        /// Floats, used as they are.
        case floats([Float])
    }

    public let shape: ImageShape
    public let count: Int
    public let pixels: Pixels
    public let labels: [Int32]?
    /// The file the images came from (for messages).
    public let source: String

    public init(shape: ImageShape, pixels: Pixels, labels: [Int32]? = nil, source: String = "") {
        let elements: Int
        switch pixels {
        case .bytes(let b): elements = b.count
        case .floats(let f): elements = f.count
        }
        precondition(shape.size > 0 && elements % shape.size == 0, "pixels do not divide into \(shape) images")
        self.shape = shape
        self.count = elements / shape.size
        self.pixels = pixels
        precondition(labels == nil || labels!.count == count, "one label per image")
        self.labels = labels
        self.source = source
    }

    /// The images at `indices` as a (b, C·H·W) tensor of floats.
    public func batch<Indices: Collection>(_ indices: Indices) -> Tensor where Indices.Element == Int {
        let d = shape.size
        return Tensor(shape: [indices.count, d]) { out in
            var row = 0
            switch pixels {
            case .bytes(let bytes):
                bytes.withUnsafeBufferPointer { src in
                    for index in indices {
                        let s = src.baseAddress! + index * d
                        let o = out.baseAddress! + row * d
                        for j in 0..<d { o[j] = Float(s[j]) * (1 / 255) }
                        row += 1
                    }
                }
            case .floats(let floats):
                floats.withUnsafeBufferPointer { src in
                    for index in indices {
                        (out.baseAddress! + row * d).update(from: src.baseAddress! + index * d, count: d)
                        row += 1
                    }
                }
            }
        }
    }

    /// A new set holding the images (and labels) at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> ImageSet {
        let d = shape.size
        let newPixels: Pixels
        switch pixels {
        case .bytes(let bytes):
            var out = [UInt8]()
            out.reserveCapacity(indices.count * d)
            for i in indices { out.append(contentsOf: bytes[i * d ..< (i + 1) * d]) }
            newPixels = .bytes(out)
        case .floats(let floats):
            var out = [Float]()
            out.reserveCapacity(indices.count * d)
            for i in indices { out.append(contentsOf: floats[i * d ..< (i + 1) * d]) }
            newPixels = .floats(out)
        }
        return ImageSet(shape: shape, pixels: newPixels, labels: labels.map { l in indices.map { l[$0] } }, source: source)
    }

    /// Smallest and largest pixel value after scaling (bytes: /255).
    public var valueRange: ClosedRange<Float> {
        switch pixels {
        case .bytes(let b):
            guard let lo = b.min(), let hi = b.max() else { return 0...0 }
            return Float(lo) / 255 ... Float(hi) / 255
        case .floats(let f):
            guard let lo = f.min(), let hi = f.max() else { return 0...0 }
            return lo...hi
        }
    }
}

extension ImageSet {
    /// Loads images from an IDX file (N×H×W or N×C×H×W unsigned bytes) or an
    /// .npy file (uint8 or float: N×H×W, N×C×H×W, or N×D, shown as √D×√D
    /// images when D is a perfect square), raw or gzipped, told apart by
    /// their magic bytes; and optionally labels (IDX or .npy, N integers).
    public static func load(images: String, labels: String? = nil) throws -> ImageSet {
        let data = try readPossiblyCompressedFile(images)
        let dims: [Int]
        let pixels: Pixels
        if NPYArray.looksLikeNPY(data) {
            let array = try NPYArray(parsing: data, path: images)
            dims = array.shape
            switch array.elements {
            case .bytes(let b): pixels = .bytes(b)
            case .floats(let f): pixels = .floats(f)
            case .integers:
                throw DatasetError.incompatible(path: images, detail: "integer images are not supported; use uint8 or float32")
            }
        } else {
            let array = try IDXArray(parsing: data, path: images)
            dims = array.dimensions
            pixels = .bytes(array.bytes)
        }
        let shape: ImageShape
        switch dims.count {
        case 2:
            let side = Int(Double(dims[1]).squareRoot().rounded())
            shape = side * side == dims[1] ? ImageShape(channels: 1, height: side, width: side)
                : ImageShape(channels: 1, height: 1, width: dims[1])
        case 3: shape = ImageShape(channels: 1, height: dims[1], width: dims[2])
        case 4: shape = ImageShape(channels: dims[1], height: dims[2], width: dims[3])
        default:
            throw DatasetError.badDimensions(
                path: images, detail: "images need 2 (N×D), 3 (N×H×W) or 4 (N×C×H×W) dimensions, found \(dims)")
        }
        guard dims[0] > 0, shape.size > 0 else {
            throw DatasetError.badDimensions(path: images, detail: "no images in \(dims)")
        }
        var labelValues: [Int32]? = nil
        if let labels {
            let values = try loadLabels(labels)
            guard values.count == dims[0] else {
                throw DatasetError.countMismatch(images: images, imageCount: dims[0], labels: labels, labelCount: values.count)
            }
            labelValues = values
        }
        return ImageSet(shape: shape, pixels: pixels, labels: labelValues, source: images)
    }

    /// Integer labels from an IDX (1 dimension) or .npy (N or N×1) file.
    static func loadLabels(_ path: String) throws -> [Int32] {
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

    /// Splits off a seeded random `fraction` of the images as a test set:
    /// (training part, held-out part), each keeping its order.
    public func holdingOut(fraction: Double, seed: UInt64) -> (train: ImageSet, test: ImageSet) {
        let (kept, held) = Self.holdOut(count: count, fraction: fraction, seed: seed)
        return (selecting(kept), selecting(held))
    }

    /// The indices a seeded hold-out of `fraction` of `count` items keeps
    /// and holds out, each in order: at least one of each.
    public static func holdOut(count: Int, fraction: Double, seed: UInt64) -> (kept: [Int], held: [Int]) {
        let testCount = max(1, min(count - 1, Int((fraction * Double(count)).rounded())))
        let permutation = RandomStream(seed: seed, domain: .dataPermutation, 1).permutation(count)
        return (Array(permutation[testCount...]).sorted(), Array(permutation[0..<testCount]).sorted())
    }

    /// Checks that every value is finite and, if `unitInterval`, in [0, 1]
    /// (bytes always are: they are scaled by 1/255).
    public func validateValues(unitInterval: Bool, requirement: String) throws {
        guard case .floats(let values) = pixels else { return }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw DatasetError.incompatible(
                path: source, detail: "value \(values[bad]) at image \(bad / shape.size), element \(bad % shape.size) is not finite")
        }
        let range = valueRange
        if unitInterval && (range.lowerBound < 0 || range.upperBound > 1) {
            throw DatasetError.incompatible(
                path: source, detail: "values range over [\(range.lowerBound), \(range.upperBound)]; \(requirement)")
        }
    }
}
