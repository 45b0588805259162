import Imaging

/// An RGB drawing surface for the few pictures vae-mpi draws itself:
/// rectangles, points, axis lines and text (a built-in 6×12 bitmap font).
public struct Canvas {
    public typealias Color = (r: UInt8, g: UInt8, b: UInt8)

    public private(set) var raster: Raster

    public init(width: Int, height: Int, background: Color = (255, 255, 255)) {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.r
            pixels[3 * i + 1] = background.g
            pixels[3 * i + 2] = background.b
        }
        raster = Raster(width: width, height: height, channels: 3, pixels: pixels)
    }

    public var width: Int { raster.width }
    public var height: Int { raster.height }

    /// Sets one pixel; coordinates outside the canvas are ignored.
    public mutating func set(_ x: Int, _ y: Int, _ c: Color) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = 3 * (y * width + x)
        raster.pixels[o] = c.r
        raster.pixels[o + 1] = c.g
        raster.pixels[o + 2] = c.b
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: Color) {
        for yy in y ..< y + h { for xx in x ..< x + w { set(xx, yy, c) } }
    }

    /// A one-pixel rectangle outline.
    public mutating func frame(x: Int, y: Int, width w: Int, height h: Int, _ c: Color) {
        fill(x: x, y: y, width: w, height: 1, c)
        fill(x: x, y: y + h - 1, width: w, height: 1, c)
        fill(x: x, y: y, width: 1, height: h, c)
        fill(x: x + w - 1, y: y, width: 1, height: h, c)
    }

    /// Draws `text` with its top-left corner at (x, y); returns its width.
    @discardableResult
    public mutating func text(_ text: String, x: Int, y: Int, _ c: Color = (0, 0, 0)) -> Int {
        var cx = x
        for scalar in text.unicodeScalars {
            let code = Int(scalar.value)
            let glyph = (32...126).contains(code) ? BitmapFont.glyphs[code - 32] : BitmapFont.glyphs[Int(("?" as Unicode.Scalar).value) - 32]
            for (row, bits) in glyph.enumerated() {
                for col in 0..<BitmapFont.width where bits & (1 << (BitmapFont.width - 1 - col)) != 0 {
                    set(cx + col, y + row, c)
                }
            }
            cx += BitmapFont.width
        }
        return cx - x
    }

    public static func textWidth(_ text: String) -> Int { text.unicodeScalars.count * BitmapFont.width }
    public static var lineHeight: Int { BitmapFont.height }
}

/// Ten distinguishable colours (matplotlib's "tab10"), for class labels.
public let categoricalColors: [Canvas.Color] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]

/// A scatter plot of 2-D points coloured by integer label, with axes, tick
/// labels and a legend: how a VAE with a 2-D latent space arranges the test set.
public enum ScatterPlot {
    public static func render(x: [Double], y: [Double], labels: [Int]?, labelNames: [String] = [],
                              title: String, size: Int = 600) -> Raster {
        precondition(x.count == y.count && (labels == nil || labels!.count == x.count))
        // Axis range: the 0.5th to 99.5th percentiles, so a few far points do
        // not squeeze the rest, widened to whole numbers around 0.
        func range(_ v: [Double]) -> (Double, Double) {
            let s = v.filter(\.isFinite).sorted()
            guard !s.isEmpty else { return (-1, 1) }
            let lo = s[Int(Double(s.count - 1) * 0.005)], hi = s[Int(Double(s.count - 1) * 0.995)]
            return ((min(lo, -1)).rounded(.down), (max(hi, 1)).rounded(.up))
        }
        let (x0, x1) = range(x), (y0, y1) = range(y)
        let classes = labels.map { Set($0).sorted() } ?? []
        let legendWidth = classes.isEmpty ? 0 : 24 + (classes.map { Canvas.textWidth(name(for: $0, labelNames)) }.max() ?? 0)
        let (left, top, bottom) = (40, 24, 28)
        var canvas = Canvas(width: left + size + 16 + legendWidth, height: top + size + bottom)
        let grid: Canvas.Color = (225, 225, 225)
        func px(_ v: Double) -> Int { left + Int(((v - x0) / (x1 - x0) * Double(size - 1)).rounded()) }
        func py(_ v: Double) -> Int { top + size - 1 - Int(((v - y0) / (y1 - y0) * Double(size - 1)).rounded()) }
        // Grid lines and tick labels at the integers.
        let xStep = max(1, Int((x1 - x0) / 8)), yStep = max(1, Int((y1 - y0) / 8))
        for t in stride(from: Int(x0), through: Int(x1), by: xStep) {
            canvas.fill(x: px(Double(t)), y: top, width: 1, height: size, t == 0 ? (160, 160, 160) : grid)
            let label = String(t)
            canvas.text(label, x: px(Double(t)) - Canvas.textWidth(label) / 2, y: top + size + 4)
        }
        for t in stride(from: Int(y0), through: Int(y1), by: yStep) {
            canvas.fill(x: left, y: py(Double(t)), width: size, height: 1, t == 0 ? (160, 160, 160) : grid)
            let label = String(t)
            canvas.text(label, x: left - 4 - Canvas.textWidth(label), y: py(Double(t)) - Canvas.lineHeight / 2)
        }
        canvas.frame(x: left - 1, y: top - 1, width: size + 2, height: size + 2, (0, 0, 0))
        canvas.text(title, x: left, y: 6)
        for i in x.indices where x[i].isFinite && y[i].isFinite {
            let (cx, cy) = (px(x[i]), py(y[i]))
            guard cx >= left, cx < left + size, cy >= top, cy < top + size else { continue }
            let color = labels.map { categoricalColors[(($0[i] % 10) + 10) % 10] } ?? (31, 119, 180)
            canvas.fill(x: cx - 1, y: cy - 1, width: 3, height: 3, color)
        }
        // Legend.
        var ly = top
        for c in classes {
            canvas.fill(x: left + size + 16, y: ly + 2, width: 8, height: 8, categoricalColors[((c % 10) + 10) % 10])
            canvas.text(name(for: c, labelNames), x: left + size + 28, y: ly)
            ly += Canvas.lineHeight + 4
        }
        return canvas.raster
    }

    static func name(for label: Int, _ names: [String]) -> String {
        label >= 0 && label < names.count ? "\(label) \(names[label])" : "\(label)"
    }
}
