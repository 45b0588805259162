import CImageCodecs
import Foundation

/// The image formats vae-mpi reads, told apart by their first bytes.
public enum ImageFormat: String, Sendable {
    case png = "PNG"
    case jpeg = "JPEG"

    /// The format whose signature `bytes` start with.
    public init?(signature bytes: some Collection<UInt8>) {
        let b = Array(bytes.prefix(8))
        if b.count >= 8, b == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { self = .png; return }
        if b.count >= 3, b[0] == 0xFF, b[1] == 0xD8, b[2] == 0xFF { self = .jpeg; return }
        return nil
    }

    /// Extensions that name image files, lower-case (matched in any case).
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]
}

/// An image as its file holds it, after only the lossless expansions
/// (palettes and transparency to RGB(A), low-bit gray to 8 bits):
/// `channels` interleaved samples per pixel (1 gray, 2 gray+alpha, 3 RGB,
/// 4 RGBA), each of `depth` bits (8 or 16), rows top to bottom.
public struct DecodedImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var depth: Int
    /// width·height·channels samples, as integers 0 … 2^depth − 1.
    public var samples: [UInt16]

    public init(width: Int, height: Int, channels: Int, depth: Int, samples: [UInt16]) {
        precondition(samples.count == width * height * channels && (1...4).contains(channels) && (depth == 8 || depth == 16))
        self.width = width
        self.height = height
        self.channels = channels
        self.depth = depth
        self.samples = samples
    }

    public var hasAlpha: Bool { channels == 2 || channels == 4 }
    public var isGray: Bool { channels <= 2 }
    public var maximum: Int { depth == 16 ? 65535 : 255 }

    /// Decodes PNG (libpng) or JPEG (libjpeg-turbo) bytes, told apart by
    /// their signature; errors name `path` and what failed.
    public init(decoding bytes: [UInt8], path: String) throws {
        guard let format = ImageFormat(signature: bytes) else {
            throw ImageError.corrupt(path: path, detail: "neither PNG nor JPEG (unrecognised first bytes)")
        }
        var image = vm_image()
        var pixels: UnsafeMutablePointer<UInt8>? = nil
        var message = [CChar](repeating: 0, count: 256)
        let status = bytes.withUnsafeBufferPointer { data in
            message.withUnsafeMutableBufferPointer { error in
                format == .png
                    ? vm_decode_png(data.baseAddress, data.count, &image, &pixels, error.baseAddress, error.count)
                    : vm_decode_jpeg(data.baseAddress, data.count, &image, &pixels, error.baseAddress, error.count)
            }
        }
        defer { free(pixels) }
        guard status == 0, let pixels else {
            let detail = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw ImageError.corrupt(path: path, detail: "\(format.rawValue): \(detail.isEmpty ? "could not be decoded" : detail)")
        }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        let samples: [UInt16]
        if image.depth == 16 {
            samples = pixels.withMemoryRebound(to: UInt16.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
        } else {
            samples = (0..<count).map { UInt16(pixels[$0]) }
        }
        self.init(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                  depth: Int(image.depth), samples: samples)
    }

    /// Reads and decodes an image file.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageError.corrupt(path: path, detail: "cannot be read")
        }
        try self.init(decoding: [UInt8](data), path: path)
    }
}
