import Foundation
import Imaging
import TensorCore

/// The images of a folder exactly as they are stored, for lossless
/// compression: 8-bit pixels with no resize, crop or colour conversion, each
/// image of `shape` (gray images for one channel, RGB for three), with their
/// paths relative to the folder, in the folder's order (see `ImageFolder`;
/// in the train/test layout, those of `split`).
public struct ExactImages: Sendable {
    /// N × C × H × W bytes.
    public var pixels: [UInt8]
    public var names: [String]

    public init(folder: String, split: DataSplit, shape: ImageShape) throws {
        let scanned = try ImageFolder(scanning: folder, skippingBadImages: false)
        let files = split == .test && scanned.test != nil ? scanned.test! : scanned.train
        var pixels = [UInt8]()
        pixels.reserveCapacity(files.count * shape.size)
        var names: [String] = []
        let root = (folder as NSString).standardizingPath + "/"
        for path in files.paths {
            let image = try DecodedImage(contentsOf: path)
            func refuse(_ detail: String) -> DatasetError {
                .incompatible(path: path, detail: detail + "; lossless compression codes images exactly as stored")
            }
            guard image.depth == 8 else { throw refuse("is a 16-bit image, the model's levels are 8-bit") }
            guard !image.hasAlpha else { throw refuse("has an alpha channel") }
            guard image.channels == shape.channels else {
                throw refuse("has \(image.channels == 1 ? "1 channel (gray)" : "3 channels (RGB)"), the model takes \(shape.channels)")
            }
            guard image.height == shape.height && image.width == shape.width else {
                throw refuse("is \(image.width) × \(image.height) pixels (width × height), the model takes \(shape.width) × \(shape.height)")
            }
            // Interleaved (H, W, C) → (C, H, W).
            let (c, plane) = (shape.channels, shape.height * shape.width)
            for channel in 0..<c {
                for i in 0..<plane { pixels.append(UInt8(image.samples[i * c + channel])) }
            }
            let standard = (path as NSString).standardizingPath
            names.append(standard.hasPrefix(root) ? String(standard.dropFirst(root.count)) : (path as NSString).lastPathComponent)
        }
        guard !names.isEmpty else { throw DatasetError.incompatible(path: folder, detail: "holds no images") }
        self.pixels = pixels
        self.names = names
    }
}
