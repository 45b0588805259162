import ArgumentParser
import Artifacts
import Collectives
import Datasets
import Foundation
import Imaging
import TensorCore
import Training
import VAEModel

/// Where pixels are missing in images to repair: a file, a rectangle of
/// every image, or pixels at random (each missing in every channel).
enum DamageMask {
    case file(String)
    case rectangle(x: Int, y: Int, width: Int, height: Int)
    case random(fraction: Double, seed: UInt64)

    /// The mask (N·C·H·W, 1 observed, 0 missing) for `count` images of `shape`.
    func mask(count: Int, shape: ImageShape) throws -> [UInt8] {
        let (c, h, w) = (shape.channels, shape.height, shape.width)
        let d = shape.size
        switch self {
        case .file(let path):
            if path.lowercased().hasSuffix(".png") {
                // One mask image for all: dark pixels (< 128) are missing.
                let image = try DecodedImage(contentsOf: path)
                guard image.width == w && image.height == h else {
                    throw DatasetError.incompatible(path: path, detail: "is \(image.width)×\(image.height); the images are \(w)×\(h)")
                }
                let plane = (0..<(h * w)).map { Int(image.samples[$0 * image.channels]) * 2 > image.maximum ? UInt8(1) : 0 }
                let one = (0..<c).flatMap { _ in plane }
                return (0..<count).flatMap { _ in one }
            }
            let values = try ImageSet.load(images: path).values
            var mask = [UInt8](repeating: 1, count: values.count)
            var bad: Int? = nil
            values.forEachChunk { offset, chunk in
                for (i, v) in chunk.enumerated() { if v == 0 { mask[offset + i] = 0 } else if v != 1 && bad == nil { bad = offset + i } } }
            if let bad { throw DatasetError.incompatible(path: path, detail: "value at index \(bad) is neither 0 nor 1") }
            if mask.count == d { return (0..<count).flatMap { _ in mask } }
            if mask.count == h * w { return (0..<count).flatMap { _ in (0..<c).flatMap { _ in mask } } }
            guard mask.count == count * d else {
                throw DatasetError.incompatible(path: path, detail: "holds \(mask.count) values; a mask has one per value "
                    + "(\(count)×\(shape) = \(count * d)), one image's (\(d)) or one plane's (\(h * w))")
            }
            return mask
        case let .rectangle(x, y, width, height):
            var one = [UInt8](repeating: 1, count: d)
            for ch in 0..<c { for yy in y..<min(y + height, h) { for xx in x..<min(x + width, w) { one[(ch * h + yy) * w + xx] = 0 } } }
            return (0..<count).flatMap { _ in one }
        case let .random(p, seed):
            var mask = [UInt8](repeating: 1, count: count * d)
            for n in 0..<count {
                let u = RandomStream(seed: seed, domain: .imputation, UInt32(truncatingIfNeeded: n), UInt32.max).uniforms(count: h * w)
                for i in 0..<(h * w) where Double(u[i]) < p { for ch in 0..<c { mask[n * d + ch * h * w + i] = 0 } }
            }
            return mask
        }
    }
}

struct Inpaint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Repair damaged images with a trained model: fill in their missing pixels.",
        discussion: """
            The missing pixels are NaN in float .npy images and those a mask marks: \(OptionName.mask) \
            (.npy of 0/1 per value, per image or per plane, or one .png whose dark pixels are \
            missing), \(OptionName.maskRect) x,y,w,h (a rectangle of every image) or \
            \(OptionName.maskRandom) p (each pixel missing with probability p, seeded). Observed \
            pixels are kept exactly. Writes \(OptionName.out) (.npy, N×C×H×W in the images' own \
            type: uint8 levels rounded, floats as they are; with \(OptionName.multiple) M, \
            M×N×C×H×W) and a grid (\(OptionName.grid)): damaged (missing pixels red), repaired, \
            and the original where it is known. Where the originals are known, prints the MSE \
            and PSNR on the removed pixels (values in [0, 1]) beside the training set's mean \
            image. Under mpirun the images are split over the ranks.
            """)

    @OptionGroup var model: CheckpointOptions
    @OptionGroup var data: DataOptions

    @Option(name: OptionName.mask.name, help: ArgumentHelp("Missing pixels: .npy of 0 (missing) and 1, or a .png whose dark pixels are missing.", valueName: "file"))
    var mask: String?

    @Option(name: OptionName.maskRect.name, help: ArgumentHelp("Remove a rectangle from every image: left, top, width, height in pixels.", valueName: "x,y,w,h"))
    var maskRect: String?

    @Option(name: OptionName.maskRandom.name, help: ArgumentHelp("Remove each pixel with probability p (seeded by \(OptionName.seed)).", valueName: "p"))
    var maskRandom: Double?

    @Option(name: OptionName.count.name, help: ArgumentHelp("Repair the first n images only (default: all).", valueName: "n"))
    var count: Int?

    @Option(name: OptionName.out.name, help: ArgumentHelp("The repaired images: .npy.", valueName: "file"))
    var out: String

    @Option(name: OptionName.grid.name, help: ArgumentHelp("The picture (default: beside \(OptionName.out), <name>-grid.png).", valueName: "png"))
    var grid: String?

    @Option(name: OptionName.columns.name, help: ArgumentHelp("Images in the picture (default: 16).", valueName: "n"))
    var columns: Int = 16

    @OptionGroup var imputation: ImputationOptions

    func validate() throws {
        guard out.lowercased().hasSuffix(".npy") else { throw invalid(.out, "must end in .npy (got \(out))") }
        if let grid, !grid.lowercased().hasSuffix(".png") { throw invalid(.grid, "must end in .png (got \(grid))") }
        let given = [mask != nil, maskRect != nil, maskRandom != nil].filter { $0 }.count
        if given > 1 { throw invalid(.mask, "\(OptionName.maskRect) and \(OptionName.maskRandom) name the damage: give one of them") }
        if let maskRandom, !(maskRandom > 0 && maskRandom < 1) {
            throw invalid(.maskRandom, "must be between 0 and 1, exclusive (got \(maskRandom))")
        }
        if let maskRect { _ = try Self.rectangle(maskRect) }
        try require(count, atLeast: 1, .count)
        try require(columns, atLeast: 1, .columns)
    }

    static func rectangle(_ text: String) throws -> (Int, Int, Int, Int) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 4, parts.allSatisfy({ $0 != nil }), parts[0]! >= 0, parts[1]! >= 0, parts[2]! >= 1, parts[3]! >= 1 else {
            throw invalid(.maskRect, "must be x,y,w,h: a left and top ≥ 0 and a width and height ≥ 1, like 0,14,28,14 (got \(text))")
        }
        return (parts[0]!, parts[1]!, parts[2]!, parts[3]!)
    }

    func run() throws {
        let (options, dataOptions, out, imputation, count, columns) = (model, data, out, imputation, count, columns)
        let gridPath = grid ?? ((out as NSString).deletingPathExtension + "-grid.png")
        let damage: DamageMask? = try mask.map { .file($0) } ?? maskRect.map { text in
            let (x, y, w, h) = try Self.rectangle(text)
            return .rectangle(x: x, y: y, width: w, height: h)
        } ?? maskRandom.map { .random(fraction: $0, seed: imputation.seed ?? 1) }
        Execution.run { communicator in
            let context = try options.open(communicator)
            let console = context.console
            guard context.columnNames == nil else {
                throw optionError(.checkpoint, "\(context.checkpoint.path) models rows of a table: vae-mpi impute fills them in",
                                  communicator)
            }
            var set = try dataOptions.images(in: context)
            if let count, count < set.count { set = set.selecting(Array(0..<count)) }
            let shape = set.shape
            let before = set.observed
            // The images as read, before the damage: the originals where they were observed.
            let undamaged = set
            if let damage {
                let current = set
                if case let .rectangle(x, y, _, _) = damage, x >= shape.width || y >= shape.height {
                    throw optionError(.maskRect, "starts outside the \(shape.width)×\(shape.height) images", communicator)
                }
                set = try communicator.collectively {
                    try current.withMask(try damage.mask(count: current.count, shape: shape), source: options.checkpoint)
                }
            }
            guard set.missingCount > 0 else {
                throw optionError(.mask, "no pixel of \(dataOptions.setName) is missing: name the damage with "
                                  + "\(OptionName.mask), \(OptionName.maskRect) or \(OptionName.maskRandom)", communicator)
            }
            let d = shape.size, n = set.count
            let observed = set.observed!
            // The original is known where the images were complete before the damage.
            let known = before ?? [UInt8](repeating: 1, count: n * d)
            let settings = imputation.settings(seed: context.seed)
            console.print("repairing \(n) images of \(shape) from \(dataOptions.setName): \(set.missingCount) missing values "
                          + String(format: "(%.1f %%)", 100 * Double(set.missingCount) / Double(n * d)))
            let t0 = monotonicSeconds()
            let result = try Imputer(model: context.model, settings: settings).imputeAll(set, communicator: communicator)
            let seconds = monotonicSeconds() - t0
            console.print("imputed with \(imputation.summary) on \(plural(communicator.size, "rank")) in "
                          + String(format: "%.2f s (%.1f images/s)", seconds, Double(n) / max(seconds, 1e-9))
                          + (result.acceptanceRate.map { String(format: "; %.1f %% of the moves accepted", 100 * $0) } ?? ""))
            // [0, 1] values of the originals (the encoder's scale of images), for scores and the picture.
            let original = undamaged.batch(0..<n).scalars
            let scale = set.levelScale
            let stored = storedValues(set)
            // Scores on the removed pixels whose original is known, beside the training set's mean image.
            let scored = (0..<(n * d)).filter { observed[$0] == 0 && known[$0] != 0 }
            if !scored.isEmpty {
                let baseline = try? Self.meanImage(context)
                func mse(_ values: (Int) -> Float) -> Double {
                    scored.reduce(0.0) { s, i in let e = Double(values(i)) - Double(original[i]); return s + e * e } / Double(scored.count)
                }
                func psnr(_ e: Double) -> Double { 10 * Foundation.log10(1 / max(e, 1e-12)) }
                let e = mse { min(max(result.single[$0], 0), 1) }
                var line = "on the \(scored.count) removed pixels: MSE " + String(format: "%.5f, PSNR %.2f dB", e, psnr(e))
                if let baseline {
                    let b = mse { baseline[$0 % d] }
                    line += "; the training set's mean image: MSE " + String(format: "%.5f, PSNR %.2f dB", b, psnr(b))
                }
                console.print(line)
            }
            // The repaired images, observed pixels exactly as stored.
            func repaired(_ values: ArraySlice<Float>) -> [Float] {
                values.enumerated().map { i, v in
                    observed[i] != 0 ? Float(stored[i]) : scale.map { s in (min(max(v, 0), 1) / s).rounded() } ?? v
                }
            }
            let m = settings.multiple
            let tables = m == 0 ? [repaired(result.single[...])]
                : (0..<m).map { k in repaired(result.draws[(k * n * d) ..< ((k + 1) * n * d)]) }
            let dims = [n, shape.channels, shape.height, shape.width]
            let bytes = set.values.element == .uint8
                ? NPYWriter.encode(tables.flatMap { $0.map { UInt8($0) } }, shape: (m > 0 ? [m] : []) + dims)
                : NPYWriter.encode(tables.flatMap { $0 }, shape: (m > 0 ? [m] : []) + dims)
            try context.write(bytes, to: out)
            console.print("wrote \(out): \(n) repaired images" + (m > 0 ? " × \(m) imputations" : ""))
            let shown = min(columns, n)
            let repairedShown = Array(result.single[0..<(shown * d)]).enumerated().map { i, v in observed[i] != 0 ? original[i] : v }
            let anyKnown = (0..<(shown * d)).contains { observed[$0] == 0 && known[$0] != 0 }
            try context.write(Self.picture(original: Array(original[0..<(shown * d)]), repaired: repairedShown,
                                           observed: Array(observed[0..<(shown * d)]), known: Array(known[0..<(shown * d)]),
                                           showOriginal: anyKnown, count: shown, shape: shape),
                              to: gridPath, what: "damaged, repaired" + (anyKnown ? ", original" : "") + " (\(shown) images)")
        }
    }

    /// The mean of the training images, in [0, 1], per value (of its
    /// observed values, when the training data has missing ones).
    static func meanImage(_ context: InferenceContext) throws -> [Float] {
        let training = try context.images(split: .train)
        let d = training.shape.size
        var sum = [Double](repeating: 0, count: d), count = sum
        var start = 0
        while start < training.count {
            let end = min(start + 1000, training.count)
            let batch = training.batch(start..<end).scalars
            let mask = training.mask(start..<end)?.scalars
            for i in 0..<(end - start) {
                for j in 0..<d where mask?[i * d + j] != 0 {
                    sum[j] += Double(batch[i * d + j])
                    count[j] += 1
                }
            }
            start = end
        }
        return (0..<d).map { Float(count[$0] > 0 ? sum[$0] / count[$0] : 0) }
    }

    /// Rows of `count` images: damaged (missing pixels red), repaired, and the original.
    static func picture(original: [Float], repaired: [Float], observed: [UInt8], known: [UInt8], showOriginal: Bool,
                        count: Int, shape: ImageShape) -> Raster {
        let (c, plane) = (shape.channels, shape.height * shape.width)
        func rgb(_ values: [Float], missingRed: Bool) -> [Float] {
            var out = [Float](repeating: 0, count: count * 3 * plane)
            for n in 0..<count {
                for p in 0..<plane {
                    let missing = missingRed && (0..<c).contains { observed[n * c * plane + $0 * plane + p] == 0 }
                    for ch in 0..<3 {
                        let v = values[n * c * plane + (c == 3 ? ch : 0) * plane + p]
                        out[(n * 3 + ch) * plane + p] = missing ? (ch == 0 ? 1 : 0) : v
                    }
                }
            }
            return out
        }
        var rows = rgb(original, missingRed: true) + rgb(repaired, missingRed: false)
        if showOriginal { rows += rgb(original.enumerated().map { known[$0] != 0 ? $1 : 0 }, missingRed: false) }
        return ImageGrid.raster(images: rows, count: count * (showOriginal ? 3 : 2), channels: 3, height: shape.height,
                                width: shape.width, columns: count)
    }
}
