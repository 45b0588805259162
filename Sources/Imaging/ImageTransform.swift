/// What turns a decoded image into a training image, in torchvision's
/// order: alpha composited on black, colour converted to `channels`, the
/// central `centerCrop`×`centerCrop` cut out, and the result resized to
/// `size`. Output is channels-first (C, H, W), as the models take it.
public struct ImageTransform: Equatable, Sendable {
    /// 1 (gray) or 3 (RGB).
    public var channels: Int
    /// S: crop the central S×S first (torchvision's CenterCrop offsets).
    public var centerCrop: Int?
    /// (H, W) to resize to: a box filter along an axis that shrinks (each
    /// output pixel the mean of the input pixels whose centres fall in its
    /// footprint, as Pillow's BOX), bilinear interpolation (half-pixel
    /// centres, edges clamped, as Pillow's BILINEAR) along one that grows.
    public var size: (height: Int, width: Int)?

    public init(channels: Int, centerCrop: Int? = nil, size: (height: Int, width: Int)? = nil) {
        precondition(channels == 1 || channels == 3)
        self.channels = channels
        self.centerCrop = centerCrop
        self.size = size
    }

    public static func == (a: ImageTransform, b: ImageTransform) -> Bool {
        a.channels == b.channels && a.centerCrop == b.centerCrop && a.size?.height == b.size?.height
            && a.size?.width == b.size?.width
    }

    /// The output (H, W) for an input of `height`×`width`, or a message
    /// saying why the crop does not fit.
    public func outputSize(height: Int, width: Int) -> Result<(height: Int, width: Int), CropError> {
        if let s = centerCrop, s > height || s > width {
            return .failure(CropError(crop: s, height: height, width: width))
        }
        if let size { return .success(size) }
        if let s = centerCrop { return .success((s, s)) }
        return .success((height, width))
    }

    public struct CropError: Error, Equatable {
        public let crop: Int
        public let height: Int
        public let width: Int
    }

    /// The image as (C, H, W) values on its own scale, 0 … 2^depth − 1
    /// (fractions where resizing averages). Precondition: the crop fits.
    public func apply(_ image: DecodedImage) -> [Float] {
        var (h, w) = (image.height, image.width)
        var plane = convertedPixels(image)          // (h, w, channels), interleaved
        if let s = centerCrop {
            let top = Self.roundHalfEven(Double(h - s) / 2), left = Self.roundHalfEven(Double(w - s) / 2)
            var cropped = [Float](repeating: 0, count: s * s * channels)
            for y in 0..<s {
                let source = ((top + y) * w + left) * channels
                for i in 0..<(s * channels) { cropped[y * s * channels + i] = plane[source + i] }
            }
            (plane, h, w) = (cropped, s, s)
        }
        if let size, size.height != h || size.width != w {
            plane = Self.resize(plane, height: h, width: w, channels: channels, to: size)
            (h, w) = size
        }
        // Interleaved (H, W, C) → planar (C, H, W).
        if channels == 1 { return plane }
        var out = [Float](repeating: 0, count: plane.count)
        let pixels = h * w
        for p in 0..<pixels { for c in 0..<channels { out[c * pixels + p] = plane[p * channels + c] } }
        return out
    }

    /// Alpha composited on black (round(c·a / max), in integers), then gray
    /// repeated to RGB or RGB to gray by ITU-R 601-2 luma in Pillow's fixed
    /// point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    func convertedPixels(_ image: DecodedImage) -> [Float] {
        let n = image.width * image.height
        let (k, maximum) = (image.channels, UInt64(image.maximum))
        let colour = image.channels >= 3
        var out = [Float](repeating: 0, count: n * channels)
        image.samples.withUnsafeBufferPointer { s in
            for p in 0..<n {
                let base = p * k
                var r = UInt64(s[base]), g = r, b = r
                if colour { g = UInt64(s[base + 1]); b = UInt64(s[base + 2]) }
                if image.hasAlpha {
                    let a = UInt64(s[base + k - 1])
                    // c·a/max is never exactly half an integer (max is odd), so this rounds to nearest.
                    r = (r * a + maximum / 2) / maximum
                    g = (g * a + maximum / 2) / maximum
                    b = (b * a + maximum / 2) / maximum
                }
                if channels == 3 {
                    out[p * 3] = Float(r); out[p * 3 + 1] = Float(g); out[p * 3 + 2] = Float(b)
                } else {
                    out[p] = Float(colour ? (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16 : r)
                }
            }
        }
        return out
    }

    /// Python's round(): halves to even (torchvision's CenterCrop offsets).
    public static func roundHalfEven(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }

    /// For each output position along an axis of `input` → `output`
    /// samples: the input positions and their weights.
    static func axisWeights(input: Int, output: Int) -> [[(index: Int, weight: Float)]] {
        if input == output { return (0..<output).map { [(index: $0, weight: Float(1))] } }
        let scale = Double(input) / Double(output)
        if output < input {
            // Box (Pillow's BOX): the mean of the input pixels whose centres
            // lie within the output pixel's footprint, centre (o + ½)·s,
            // half-width s/2 (Pillow's coefficients, without its fixed point).
            return (0..<output).map { o in
                let centre = (Double(o) + 0.5) * scale
                let support = 0.5 * scale
                let first = max(Int(centre - support + 0.5), 0)
                let last = min(Int(centre + support + 0.5), input)
                var taps: [(index: Int, weight: Float)] = []
                for i in first..<last {
                    let x = (Double(i) - centre + 0.5) / scale
                    if x > -0.5 && x <= 0.5 { taps.append((index: i, weight: 1)) }
                }
                let n = Float(taps.count)
                return taps.map { (index: $0.index, weight: 1 / n) }
            }
        }
        // Bilinear: centre (o + ½)·s − ½, clamped to the edge pixels.
        return (0..<output).map { o in
            let c = min(max((Double(o) + 0.5) * scale - 0.5, 0), Double(input - 1))
            let i0 = Int(c.rounded(.down))
            let f = Float(c - Double(i0))
            let i1 = min(i0 + 1, input - 1)
            if f == 0 { return [(index: i0, weight: Float(1))] }
            return [(index: i0, weight: 1 - f), (index: i1, weight: f)]
        }
    }

    /// Separable resize of an interleaved (h, w, c) plane: rows, then columns.
    static func resize(_ plane: [Float], height h: Int, width w: Int, channels c: Int,
                       to size: (height: Int, width: Int)) -> [Float] {
        let (oh, ow) = size
        let across = axisWeights(input: w, output: ow), down = axisWeights(input: h, output: oh)
        var rows = [Float](repeating: 0, count: h * ow * c)
        for y in 0..<h {
            for x in 0..<ow {
                for ch in 0..<c {
                    var v: Float = 0
                    for (i, weight) in across[x] { v += weight * plane[(y * w + i) * c + ch] }
                    rows[(y * ow + x) * c + ch] = v
                }
            }
        }
        var out = [Float](repeating: 0, count: oh * ow * c)
        for y in 0..<oh {
            for x in 0..<ow {
                for ch in 0..<c {
                    var v: Float = 0
                    for (i, weight) in down[y] { v += weight * rows[(i * ow + x) * c + ch] }
                    out[(y * ow + x) * c + ch] = v
                }
            }
        }
        return out
    }
}
