import Imaging

/// Lays out images (C×H×W floats in [0, 1], as a model decodes them) in a
/// grid with a border, as an 8-bit raster: gray for one channel, RGB for
/// three; other channel counts show their first channel.
public enum ImageGrid {
    /// - Parameters:
    ///   - images: `count · C·H·W` floats, image after image, values clamped to [0, 1].
    ///   - columns: images per row; rows follow from the count.
    ///   - padding: border pixels around and between images (value `background`).
    public static func raster(images: [Float], count: Int, channels: Int, height: Int, width: Int,
                              columns: Int, padding: Int = 2, background: UInt8 = 255) -> Raster {
        precondition(images.count == count * channels * height * width, "image grid: pixel count")
        precondition(columns > 0)
        let rows = max(1, (count + columns - 1) / columns)
        let outChannels = channels == 3 ? 3 : 1
        let gridWidth = columns * width + (columns + 1) * padding
        let gridHeight = rows * height + (rows + 1) * padding
        var raster = Raster(width: gridWidth, height: gridHeight, channels: outChannels, fill: background)
        let plane = height * width
        for n in 0..<count {
            let (row, column) = (n / columns, n % columns)
            let top = padding + row * (height + padding)
            let left = padding + column * (width + padding)
            let base = n * channels * plane
            for y in 0..<height {
                for x in 0..<width {
                    let o = ((top + y) * gridWidth + left + x) * outChannels
                    for c in 0..<outChannels {
                        let v = images[base + c * plane + y * width + x]
                        raster.pixels[o + c] = toByte(v)
                    }
                }
            }
        }
        return raster
    }

    /// A float in [0, 1] as a byte, rounding to nearest; NaN becomes 0.
    @inline(__always)
    public static func toByte(_ v: Float) -> UInt8 {
        guard !v.isNaN else { return 0 }
        return UInt8(min(max(v, 0), 1) * 255 + 0.5)
    }
}
