import Artifacts
import Imaging
import Collectives
import Datasets
import Foundation
import TensorCore
import VAEModel

/// The operations of the inference subcommands. Distributed ones split the
/// images into one contiguous block per rank and combine exact sums.
public enum Inference {
    /// E[x | z] (or, with `.sample`, a draw x ~ p(x | z)) for `count` draws
    /// z ~ N(0, I) from the stream (seed, .sampling, 1); a conditional model
    /// draws them all of class `label`.
    public static func samples(_ model: LoadedModel, count: Int, seed: UInt64, label: Int32? = nil,
                               observation: Observation = .mean) -> Tensor {
        let z = Tensor(normalsFrom: RandomStream(seed: seed, domain: .sampling, 1), shape: [count, model.latentSize])
        return model.observe(z, condition: model.condition(labels: label.map { [Int32](repeating: $0, count: count) },
                                                           count: count),
                             as: observation, seed: seed)
    }

    /// A conditional model's samples, one row of `columns` per class: column
    /// j decodes the same z_j (the stream (seed, .sampling, 1)) for every
    /// class, so a column shows one style across classes. (K·columns, D).
    public static func classSamples(_ model: LoadedModel, columns: Int, seed: UInt64,
                                    observation: Observation = .mean) -> Tensor {
        let k = model.classes
        let z = RandomStream(seed: seed, domain: .sampling, 1).normals(count: columns * model.latentSize)
        let codes = Tensor(shape: [k * columns, model.latentSize], scalars: Array((0..<k).map { _ in z }.joined()))
        let labels = (0..<k).flatMap { [Int32](repeating: Int32($0), count: columns) }
        return model.observe(codes, condition: model.condition(labels: labels, count: k * columns), as: observation, seed: seed)
    }

    /// E[x | z = posterior mean] for each row of x (conditioned on their labels' one-hot rows).
    public static func reconstructions(_ model: LoadedModel, of x: Tensor, condition: Tensor? = nil) -> Tensor {
        model.decodeMean(model.posteriorMean(x, condition: condition), condition: condition)
    }

    /// `steps` points on the straight line between the posterior means of a
    /// and b (both ends included), decoded: (steps, D). A conditional model
    /// moves along the line between their conditions too (from a's one-hot
    /// label to b's).
    public static func interpolation(_ model: LoadedModel, from a: Tensor, to b: Tensor, steps: Int,
                                     conditions: (Tensor, Tensor)? = nil) -> Tensor {
        let pair = conditions.map { Tensor(shape: [2, $0.0.count], scalars: $0.0.scalars + $0.1.scalars) }
        let means = model.posteriorMean(Tensor(shape: [2, a.count], scalars: a.scalars + b.scalars), condition: pair).scalars
        let z = model.latentSize
        let k = model.classes
        var path: [Float] = []
        var blend: [Float] = []
        for s in 0..<steps {
            let t = steps == 1 ? 0 : Float(s) / Float(steps - 1)
            for j in 0..<z { path.append((1 - t) * means[j] + t * means[z + j]) }
            if let pair { for j in 0..<k { blend.append((1 - t) * pair.scalars[j] + t * pair.scalars[k + j]) } }
        }
        return model.decodeMean(Tensor(shape: [steps, z], scalars: path),
                                condition: pair == nil ? nil : Tensor(shape: [steps, k], scalars: blend))
    }

    /// Posterior means of every image, (N, Z), on every rank: each rank
    /// encodes its block and a sum of disjoint blocks assembles them.
    public static func encodeMeans(_ model: LoadedModel, images: ImageSet, batchSize: Int,
                                   communicator: Communicator) throws -> [Float] {
        let z = model.latentSize
        var all = [Float](repeating: 0, count: images.count * z)
        let block = ShardPlan.block(count: images.count, rank: communicator.rank, size: communicator.size)
        var start = block.lowerBound
        while start < block.upperBound {
            let end = min(start + batchSize, block.upperBound)
            let means = model.posteriorMean(images.batch(start..<end), condition: model.condition(of: images, start..<end))
                .scalars
            all.replaceSubrange(start * z ..< end * z, with: means)
            start = end
        }
        try communicator.allreduceSum(&all)
        return all
    }

    /// The decoded manifold of a 2-D latent space: a `side`×`side` grid of
    /// E[x | z] at the standard-normal quantiles 0.05 … 0.95 in each
    /// coordinate (Kingma & Welling 2014, fig. 4), z₁ left to right, z₂
    /// bottom to top; a conditional model's, for class `label`.
    public static func manifold(_ model: LoadedModel, side: Int = 20, label: Int32? = nil) -> Raster {
        precondition(model.latentSize == 2, "the manifold picture needs a 2-D latent space")
        let q = (0..<side).map { normalQuantile(0.05 + 0.9 * Double($0) / Double(max(side - 1, 1))) }
        var z: [Float] = []
        for row in 0..<side {
            for column in 0..<side { z += [Float(q[column]), Float(q[side - 1 - row])] }
        }
        let count = side * side
        let images = model.decodeMean(Tensor(shape: [count, 2], scalars: z),
                                      condition: model.condition(labels: label.map { [Int32](repeating: $0, count: count) },
                                                                 count: count))
        let image = model.image
        return ImageGrid.raster(images: images.scalars, count: side * side, channels: image.channels,
                                height: image.height, width: image.width, columns: side, padding: 0)
    }

    /// Rows of `columns` inputs, each above the row of their reconstructions;
    /// blank (white) tiles fill a short last row. x and y are (N, D).
    public static func reconstructionGrid(inputs x: Tensor, reconstructions y: Tensor, image: ImageShape,
                                          columns: Int) -> Raster {
        let count = x.shape[0], d = image.size
        var tiles: [Float] = []
        var tileCount = 0
        for rowStart in stride(from: 0, to: count, by: columns) {
            let n = min(columns, count - rowStart)
            for source in [x, y] {
                tiles += source.scalars[rowStart * d ..< (rowStart + n) * d]
                tiles += [Float](repeating: 1, count: (columns - n) * d)
                tileCount += columns
            }
        }
        return ImageGrid.raster(images: tiles, count: tileCount, channels: image.channels, height: image.height,
                                width: image.width, columns: columns)
    }

    /// Images (N, D) in a grid of `columns` per row.
    public static func grid(_ images: Tensor, image: ImageShape, columns: Int) -> Raster {
        ImageGrid.raster(images: images.scalars, count: images.shape[0], channels: image.channels,
                         height: image.height, width: image.width, columns: columns)
    }

    /// Image a, the decoded path between it and b, and image b, in one row.
    public static func interpolationStrip(from a: Tensor, path: Tensor, to b: Tensor, image: ImageShape) -> Raster {
        let count = path.shape[0] + 2
        return ImageGrid.raster(images: a.scalars + path.scalars + b.scalars, count: count, channels: image.channels,
                                height: image.height, width: image.width, columns: count)
    }

    /// Where `encode` writes the labels beside latents saved to `latentsPath`:
    /// latents.npy → labels.npy; other names get a .labels.npy suffix.
    public static func labelsPath(forLatents latentsPath: String) -> String {
        let name = (latentsPath as NSString).lastPathComponent
        let directory = (latentsPath as NSString).deletingLastPathComponent
        let labels = name.contains("latents") ? name.replacingOccurrences(of: "latents", with: "labels")
            : (name.hasSuffix(".npy") ? String(name.dropLast(4)) : name) + ".labels.npy"
        return directory.isEmpty ? labels : directory + "/" + labels
    }

    /// Where `encode` writes the class names beside a labels file:
    /// labels.npy → labels.txt.
    public static func classNamesPath(forLabels labelsPath: String) -> String {
        (labelsPath.hasSuffix(".npy") ? String(labelsPath.dropLast(4)) : labelsPath) + ".txt"
    }

    /// Scatter of posterior means (N, 2) coloured by label.
    public static func scatter(means: [Float], labels: [Int32]?, labelNames: [String], title: String) -> Raster {
        let n = means.count / 2
        return ScatterPlot.render(x: (0..<n).map { Double(means[2 * $0]) }, y: (0..<n).map { Double(means[2 * $0 + 1]) },
                                  labels: labels?.map(Int.init), labelNames: labelNames, title: title)
    }
}

/// Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation, relative error
/// below 1.2e-9, refined by one Halley step with erfc).
public func normalQuantile(_ p: Double) -> Double {
    precondition(p > 0 && p < 1)
    let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
    let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
             6.680131188771972e+01, -1.328068155288572e+01]
    let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
    let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
    var x: Double
    if p < 0.02425 {
        let q = (-2 * log(p)).squareRoot()
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    } else if p <= 1 - 0.02425 {
        let q = p - 0.5, r = q * q
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    } else {
        let q = (-2 * log(1 - p)).squareRoot()
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    }
    let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
    let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
    return x - u / (1 + x * u / 2)
}
