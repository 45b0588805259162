import CPNG

/// An 8-bit grayscale or RGB raster, encoded and decoded with libpng's
/// simplified API (`png_image`). The one image type of the package: the
/// pictures vae-mpi draws (Artifacts) and the images it reads (Datasets).
public struct Raster: Equatable {
    public var width: Int
    public var height: Int
    /// 1 (gray) or 3 (RGB).
    public var channels: Int
    /// Row-major, channels interleaved.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "PNG rasters are gray or RGB")
        precondition(pixels.count == width * height * channels, "raster size")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A raster of one colour.
    public init(width: Int, height: Int, channels: Int, fill: UInt8) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: fill, count: width * height * channels))
    }

    /// PNG bytes.
    public func pngData() throws -> [UInt8] {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = channels == 3 ? png_uint_32(PNG_FORMAT_RGB) : png_uint_32(PNG_FORMAT_GRAY)
        var size = 0
        let ok = pixels.withUnsafeBytes { raw in
            png_image_write_to_memory(&image, nil, &size, 0, raw.baseAddress, 0, nil)
        }
        guard ok != 0, size > 0 else { throw pngError(&image, "encode") }
        var out = [UInt8](repeating: 0, count: size)
        let ok2 = out.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBytes { raw in
                png_image_write_to_memory(&image, dst.baseAddress, &size, 0, raw.baseAddress, 0, nil)
            }
        }
        guard ok2 != 0 else { throw pngError(&image, "encode") }
        png_image_free(&image)
        return Array(out[0..<size])
    }

    /// Decodes PNG bytes to gray (if the image has no colour) or RGB.
    public init(pngData bytes: [UInt8], path: String = "<memory>") throws {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        let begun = bytes.withUnsafeBytes { raw in
            png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count)
        }
        guard begun != 0 else {
            throw ImageError.corrupt(path: path, detail: "not a PNG image (\(Self.message(&image)))")
        }
        let color = (image.format & png_uint_32(PNG_FORMAT_FLAG_COLOR)) != 0
        image.format = color ? png_uint_32(PNG_FORMAT_RGB) : png_uint_32(PNG_FORMAT_GRAY)
        let channels = color ? 3 : 1
        let (w, h) = (Int(image.width), Int(image.height))
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        let finished = pixels.withUnsafeMutableBytes { dst in
            png_image_finish_read(&image, nil, dst.baseAddress, 0, nil)
        }
        guard finished != 0 else {
            throw ImageError.corrupt(path: path, detail: "PNG data (\(Self.message(&image)))")
        }
        self.init(width: w, height: h, channels: channels, pixels: pixels)
    }

    private static func message(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
    }

    private func pngError(_ image: inout png_image, _ what: String) -> ImageError {
        let text = Self.message(&image)
        png_image_free(&image)
        return .codec(operation: "PNG " + what, reason: text)
    }
}
