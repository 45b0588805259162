import Foundation
import Imaging

/// One line of a plot: points joined in order (or, `steps`, drawn as a
/// histogram's outline), in one colour, named in the legend.
public struct PlotSeries {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var color: Canvas.Color
    public var steps: Bool
    /// Draw a dot at every point too (for sparse series, like evaluations).
    public var markers: Bool

    public init(name: String, points: [(x: Double, y: Double)], color: Canvas.Color, steps: Bool = false,
                markers: Bool = false) {
        self.name = name
        self.points = points
        self.color = color
        self.steps = steps
        self.markers = markers
    }
}

/// One panel: a title, axis labels, the series, and which part of the data
/// sets the y range (points at x below `yRangeFromX` are drawn but may be
/// clipped: a loss's first steps would otherwise flatten the rest).
public struct PlotPanel {
    public var title: String
    public var xLabel: String
    public var series: [PlotSeries]
    public var yRangeFromX: Double?
    public var yFromZero: Bool

    public init(title: String, xLabel: String, series: [PlotSeries], yRangeFromX: Double? = nil, yFromZero: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.series = series
        self.yRangeFromX = yRangeFromX
        self.yFromZero = yFromZero
    }
}

/// Line plots for people who would rather look than read: panels stacked
/// vertically, each with a frame, grid lines at round tick values (1, 2 or
/// 5 × 10^k), tick labels, a title, an x-axis label and a legend, in the
/// built-in 6×12 font.
public enum LinePlot {
    public static func render(_ panels: [PlotPanel], title: String, width: Int = 820, panelHeight: Int = 230) -> Raster {
        let (left, right, titleHeight, gap) = (64, 16, 22, 48)
        let plotWidth = width - left - right
        let height = titleHeight + panels.count * (panelHeight + gap)
        var canvas = Canvas(width: width, height: height)
        canvas.text(title, x: left, y: 5)
        for (i, panel) in panels.enumerated() {
            let top = titleHeight + i * (panelHeight + gap) + 16
            draw(panel, on: &canvas, left: left, top: top, width: plotWidth, height: panelHeight - 16)
        }
        return canvas.raster
    }

    static func draw(_ panel: PlotPanel, on canvas: inout Canvas, left: Int, top: Int, width: Int, height: Int) {
        let all = panel.series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        canvas.text(panel.title, x: left, y: top - 15)
        canvas.frame(x: left - 1, y: top - 1, width: width + 2, height: height + 2, (0, 0, 0))
        guard !all.isEmpty else {
            canvas.text("(no data yet)", x: left + 8, y: top + 8, (120, 120, 120))
            return
        }
        var (x0, x1) = (all.map(\.x).min()!, all.map(\.x).max()!)
        if x0 > 0 && x0 < x1 - x0 { x0 = 0 }   // steps: from 0
        if x1 <= x0 { (x0, x1) = (x0 - 0.5, x0 + 0.5) }
        let ranged = all.filter { $0.x >= (panel.yRangeFromX ?? -Double.infinity) }
        let ys = (ranged.isEmpty ? all : ranged).map(\.y)
        var (y0, y1) = (ys.min()!, ys.max()!)
        if panel.yFromZero { y0 = min(y0, 0) }
        if y1 <= y0 { (y0, y1) = (y0 - max(abs(y0) * 0.05, 1e-12), y1 + max(abs(y1) * 0.05, 1e-12)) }
        let margin = (y1 - y0) * 0.05
        (y0, y1) = (panel.yFromZero && y0 == 0 ? 0 : y0 - margin, y1 + margin)
        func px(_ v: Double) -> Double { Double(left) + (v - x0) / (x1 - x0) * Double(width - 1) }
        func py(_ v: Double) -> Double { Double(top + height - 1) - (v - y0) / (y1 - y0) * Double(height - 1) }
        let grid: Canvas.Color = (228, 228, 228)
        let xTicks = ticks(x0, x1, target: 8), yTicks = ticks(y0, y1, target: 5)
        for t in xTicks.values {
            let x = Int(px(t).rounded())
            canvas.fill(x: x, y: top, width: 1, height: height, grid)
            canvas.fill(x: x, y: top + height, width: 1, height: 4, (0, 0, 0))
            let label = format(t, step: xTicks.step)
            canvas.text(label, x: x - Canvas.textWidth(label) / 2, y: top + height + 6)
        }
        for t in yTicks.values {
            let y = Int(py(t).rounded())
            canvas.fill(x: left, y: y, width: width, height: 1, grid)
            canvas.fill(x: left - 4, y: y, width: 4, height: 1, (0, 0, 0))
            let label = format(t, step: yTicks.step)
            canvas.text(label, x: left - 6 - Canvas.textWidth(label), y: y - Canvas.lineHeight / 2)
        }
        canvas.text(panel.xLabel, x: left + width - Canvas.textWidth(panel.xLabel), y: top + height + 20, (80, 80, 80))
        // The series, clipped to the frame.
        for series in panel.series {
            let points = series.points.filter { $0.x.isFinite && $0.y.isFinite }
            var previous: (Double, Double)? = nil
            for (k, p) in points.enumerated() {
                let current = (px(p.x), py(p.y))
                if let previous {
                    if series.steps {
                        line(&canvas, previous, (current.0, previous.1), series.color, left: left, top: top, width: width, height: height)
                        line(&canvas, (current.0, previous.1), current, series.color, left: left, top: top, width: width, height: height)
                    } else {
                        line(&canvas, previous, current, series.color, left: left, top: top, width: width, height: height)
                    }
                }
                if series.markers || points.count == 1 {
                    let (cx, cy) = (Int(current.0.rounded()), Int(current.1.rounded()))
                    if cx >= left && cx < left + width && cy >= top && cy < top + height {
                        canvas.fill(x: cx - 2, y: cy - 2, width: 5, height: 5, series.color)
                    }
                }
                if k == points.count - 1 && series.steps {
                    line(&canvas, current, (min(current.0 + 1, Double(left + width - 1)), current.1), series.color,
                         left: left, top: top, width: width, height: height)
                }
                previous = current
            }
        }
        // Legend, top right inside the frame, on white.
        let names = panel.series.map(\.name)
        let legendWidth = 30 + (names.map(Canvas.textWidth).max() ?? 0)
        let legendHeight = names.count * (Canvas.lineHeight + 3) + 6
        let lx = left + width - legendWidth - 6, ly = top + 6
        canvas.fill(x: lx, y: ly, width: legendWidth, height: legendHeight, (255, 255, 255))
        canvas.frame(x: lx, y: ly, width: legendWidth, height: legendHeight, (170, 170, 170))
        for (i, series) in panel.series.enumerated() {
            let y = ly + 4 + i * (Canvas.lineHeight + 3)
            canvas.fill(x: lx + 5, y: y + Canvas.lineHeight / 2 - 1, width: 16, height: 3, series.color)
            canvas.text(series.name, x: lx + 25, y: y)
        }
    }

    /// A 2-pixel-wide line from a to b, clipped to the plot area.
    static func line(_ canvas: inout Canvas, _ a: (Double, Double), _ b: (Double, Double), _ c: Canvas.Color,
                     left: Int, top: Int, width: Int, height: Int) {
        let n = max(Int(max(abs(b.0 - a.0), abs(b.1 - a.1)).rounded(.up)), 1)
        for i in 0...n {
            let t = Double(i) / Double(n)
            let x = Int((a.0 + (b.0 - a.0) * t).rounded()), y = Int((a.1 + (b.1 - a.1) * t).rounded())
            for (dx, dy) in [(0, 0), (0, 1)] where x + dx >= left && x + dx < left + width && y + dy >= top && y + dy < top + height {
                canvas.set(x + dx, y + dy, c)
            }
        }
    }

    /// Round tick values in [lo, hi]: a step of 1, 2 or 5 × 10^k giving
    /// about `target` ticks.
    public static func ticks(_ lo: Double, _ hi: Double, target: Int) -> (values: [Double], step: Double) {
        let raw = (hi - lo) / Double(max(target, 1))
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var values: [Double] = []
        var v = (lo / step).rounded(.up) * step
        while v <= hi + step * 1e-9 {
            values.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return (values, step)
    }

    /// A tick label with as many decimals as the step needs ("250", "0.5",
    /// "0.0002"), or an exponent for very small steps ("2e-05").
    public static func format(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        let decimals = max(0, -Int(log10(step).rounded(.down)))
        if decimals > 4 { return String(format: "%.0e", v) }
        if abs(v) >= 1e6 { return String(format: "%.3g", v) }
        return String(format: "%.\(decimals)f", v)
    }
}
