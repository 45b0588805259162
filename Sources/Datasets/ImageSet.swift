import TensorCore

/// Channels × height × width of one image (NCHW without the N).
public struct ImageShape: Equatable, Codable, Sendable, CustomStringConvertible {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// C·H·W, the number of dimensions of one sample.
    public var size: Int { channels * height * width }
    public var description: String { "\(channels)×\(height)×\(width)" }
}

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

    public init(shape: ImageShape, pixels: Pixels, labels: [Int32]? = nil) {
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
        return ImageSet(shape: shape, pixels: newPixels, labels: labels.map { l in indices.map { l[$0] } })
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
    /// Loads an IDX image file (N×H×W, or N×C×H×W) and optionally its IDX
    /// label file (N), checking that the counts agree.
    public static func loadIDX(images: String, labels: String? = nil) throws -> ImageSet {
        let array = try IDXArray(contentsOf: images)
        let dims = array.dimensions
        let shape: ImageShape
        switch dims.count {
        case 3: shape = ImageShape(channels: 1, height: dims[1], width: dims[2])
        case 4: shape = ImageShape(channels: dims[1], height: dims[2], width: dims[3])
        default:
            throw DatasetError.badDimensions(
                path: images, detail: "an image file needs 3 (N×H×W) or 4 (N×C×H×W) dimensions, found \(dims)")
        }
        guard dims[0] > 0, shape.size > 0 else {
            throw DatasetError.badDimensions(path: images, detail: "no images in \(dims)")
        }
        var labelValues: [Int32]? = nil
        if let labels {
            let l = try IDXArray(contentsOf: labels)
            guard l.dimensions.count == 1 else {
                throw DatasetError.badDimensions(path: labels, detail: "a label file needs 1 dimension, found \(l.dimensions)")
            }
            guard l.dimensions[0] == dims[0] else {
                throw DatasetError.countMismatch(images: images, imageCount: dims[0], labels: labels, labelCount: l.dimensions[0])
            }
            labelValues = l.bytes.map { Int32($0) }
        }
        return ImageSet(shape: shape, pixels: .bytes(array.bytes), labels: labelValues)
    }
}
