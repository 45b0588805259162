import TensorCore
import VAEModel

/// A trained model's encoder and decoder on the codec's own kernels: plain
/// loops in Float with every sum in one fixed order (inputs in index order,
/// then kernel rows and columns), no FMA, no library. The training kernels
/// (oneDNN, OpenBLAS) choose their blocking and instructions per CPU, and
/// their results differ in the last bits between machines; these loops give
/// the same bits on every machine and in every build, which bits-back
/// decoding needs (the decoder must recompute the encoder's frequencies).
/// One image at a time: decoding is sequential anyway.
/// Legend: C channels, H×W image, D = C·H·W, Z latent, P likelihood parameters.
public struct PortableModel: Sendable {
    enum Layers: Sendable {
        case mlp(hidden: [Int], activation: Activation)
        case conv(channels: [Int])
    }

    let layers: Layers
    public let image: ImageShape
    public let latentSize: Int
    /// P: the likelihood's parameters per data dimension.
    public let parametersPerDimension: Int
    /// Weights transposed to (inputs, outputs) for the dense layers, as given for convolutions.
    let tensors: [String: [Float]]
    let shapes: [String: [Int]]

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case conditional
        case missing(String)

        public var description: String {
            switch self {
            case .conditional:
                return "the model is conditional: compression codes images without labels, with an unconditional model"
            case .missing(let name):
                return "the model has no parameter \(name)"
            }
        }
    }

    /// The model of `architecture` with parameters `named` (PyTorch names, as checkpoints hold them).
    public init(architecture: Architecture, image: ImageShape, parameters named: [(name: String, tensor: Tensor)]) throws {
        guard architecture.conditionalClasses == 0 else { throw Failure.conditional }
        self.image = image
        latentSize = architecture.latentSize
        parametersPerDimension = architecture.likelihood.outputsPerDimension
        var tensors: [String: [Float]] = [:], shapes: [String: [Int]] = [:]
        for (name, tensor) in named where tensor.count > 0 {
            shapes[name] = tensor.shape
            let s = tensor.shape
            if s.count == 2 {
                // Dense weights (O, I) → (I, O): one input updates every output in turn.
                let (o, i) = (s[0], s[1])
                var t = [Float](repeating: 0, count: o * i)
                for r in 0..<o { for c in 0..<i { t[c * o + r] = tensor.scalars[r * i + c] } }
                tensors[name] = t
            } else if s.count == 4 {
                // Convolution (O, C, 3, 3) and transposed convolution (C, O, 3, 3) weights → (C, 3, 3, O): one
                // input value updates every output channel of a pixel in turn.
                let transposed = name.hasPrefix("dec.")
                let (c, o) = transposed ? (s[0], s[1]) : (s[1], s[0])
                var t = [Float](repeating: 0, count: tensor.count)
                for ic in 0..<c {
                    for out in 0..<o {
                        for k in 0..<9 {
                            let from = transposed ? (ic * o + out) * 9 + k : (out * c + ic) * 9 + k
                            t[(ic * 9 + k) * o + out] = tensor.scalars[from]
                        }
                    }
                }
                tensors[name] = t
            } else {
                tensors[name] = tensor.scalars
            }
        }
        self.tensors = tensors
        self.shapes = shapes
        switch architecture {
        case .mlp(let o): layers = .mlp(hidden: o.hiddenSizes, activation: o.activation)
        case .conv(let o): layers = .conv(channels: o.channels)
        }
        for name in requiredNames where tensors[name] == nil { throw Failure.missing(name) }
    }

    var auxiliaryName: String? {
        parametersPerDimension == 1 ? nil : shapes.keys.first { $0.hasPrefix(auxiliaryPrefix) && $0.hasSuffix(".weight") }
            .map { String($0.dropLast(".weight".count)) }
    }

    var auxiliaryPrefix: String {
        switch layers {
        case .mlp: return "fc4_"
        case .conv(let channels): return "dec.deconv\(channels.count)_"
        }
    }

    var requiredNames: [String] {
        switch layers {
        case .mlp(let hidden, _):
            return ["fc1.weight", "fc21.weight", "fc22.weight", "fc3.weight", "fc4.weight"]
                + (1..<hidden.count).flatMap { ["enc.hidden\($0).weight", "dec.hidden\($0).weight"] }
        case .conv(let c):
            return (1...c.count).map { "enc.conv\($0).weight" } + ["enc.fc_mu.weight", "enc.fc_logvar.weight", "dec.fc.weight"]
                + (1...c.count).map { "dec.deconv\($0).weight" }
        }
    }

    // MARK: - The passes

    /// q(z | x) of one sample x (D values, the encoder's scaled input): (μ, log σ²), Z each.
    public func posterior(_ x: [Float]) -> (mean: [Float], logVariance: [Float]) {
        switch layers {
        case let .mlp(hidden, activation):
            var h = activate(dense("fc1", x), activation)
            for i in 1..<hidden.count { h = activate(dense("enc.hidden\(i)", h), activation) }
            return (dense("fc21", h), dense("fc22", h))
        case .conv(let channels):
            var h = x
            var (c, height, width) = (image.channels, image.height, image.width)
            for (i, out) in channels.enumerated() {
                h = relu(convolution("enc.conv\(i + 1)", h, inputs: c, outputs: out, height: height, width: width))
                (c, height, width) = (out, height / 2, width / 2)
            }
            return (dense("enc.fc_mu", h), dense("enc.fc_logvar", h))
        }
    }

    /// The likelihood's parameters for one latent z (Z values): P planes of D.
    public func likelihoodParameters(_ z: [Float]) -> [[Float]] {
        let d = image.size
        var planes: [[Float]]
        switch layers {
        case let .mlp(hidden, activation):
            var h = activate(dense("fc3", z), activation)
            for i in 1..<hidden.count { h = activate(dense("dec.hidden\(i)", h), activation) }
            planes = [dense("fc4", h)]
            if let aux = auxiliaryName {
                let all = dense(aux, h)
                planes += (0..<(parametersPerDimension - 1)).map { Array(all[$0 * d ..< ($0 + 1) * d]) }
            }
        case .conv(let channels):
            let n = channels.count
            var (height, width) = (image.height >> n, image.width >> n)
            var h = relu(dense("dec.fc", z))                   // (cN, H/2^N, W/2^N), channels first
            var c = channels[n - 1]
            for i in 1..<n {
                let out = channels[n - 1 - i]
                h = relu(transposedConvolution("dec.deconv\(i)", h, inputs: c, outputs: out, height: height, width: width))
                (c, height, width) = (out, height * 2, width * 2)
            }
            planes = [transposedConvolution("dec.deconv\(n)", h, inputs: c, outputs: image.channels, height: height, width: width)]
            if let aux = auxiliaryName {
                let all = transposedConvolution(aux, h, inputs: c, outputs: (parametersPerDimension - 1) * image.channels,
                                                height: height, width: width)
                planes += (0..<(parametersPerDimension - 1)).map { Array(all[$0 * d ..< ($0 + 1) * d]) }
            }
        }
        return planes
    }

    // MARK: - Kernels, in one fixed order

    func relu(_ x: [Float]) -> [Float] { x.map { Swift.max($0, 0) } }

    /// ReLU, or tanh from `PortableMath.exp` (1 − 2/(e^{2x} + 1), in Double).
    func activate(_ x: [Float], _ activation: Activation) -> [Float] {
        switch activation {
        case .relu: return relu(x)
        case .tanh:
            return x.map { v in
                let t = PortableMath.exp(-2 * Swift.abs(Double(v)))
                let y = Float((1 - t) / (1 + t))
                return v >= 0 ? y : -y
            }
        }
    }

    /// y = W x + b: output o accumulates b_o, then W_o,i · x_i for i = 0, 1, … in turn.
    func dense(_ layer: String, _ x: [Float]) -> [Float] {
        let shape = shapes[layer + ".weight"]!
        let (o, i) = (shape[0], shape[1])
        precondition(x.count == i, "\(layer): \(x.count) inputs, the layer takes \(i)")
        var y = tensors[layer + ".bias"]!
        let w = tensors[layer + ".weight"]!
        w.withUnsafeBufferPointer { w in
            y.withUnsafeMutableBufferPointer { y in
                for input in 0..<i {
                    let v = x[input]
                    let row = w.baseAddress! + input * o
                    for output in 0..<o { y[output] += row[output] * v }
                }
            }
        }
        return y
    }

    /// 3×3 convolution, stride 2, padding 1, (C, H, W) → (O, H/2, W/2): each
    /// output accumulates its bias, then input channels, kernel rows, kernel
    /// columns in turn (weights as (C, 3, 3, O), so that the output channels
    /// of a pixel advance together).
    func convolution(_ layer: String, _ x: [Float], inputs c: Int, outputs o: Int, height: Int, width: Int) -> [Float] {
        let w = tensors[layer + ".weight"]!, b = tensors[layer + ".bias"]!
        let (oh, ow) = (height / 2, width / 2)
        var y = [Float](repeating: 0, count: o * oh * ow)
        var acc = [Float](repeating: 0, count: o)
        w.withUnsafeBufferPointer { w in
            acc.withUnsafeMutableBufferPointer { acc in
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        for out in 0..<o { acc[out] = b[out] }
                        for ic in 0..<c {
                            for ky in 0..<3 {
                                let iy = 2 * oy - 1 + ky
                                guard iy >= 0 && iy < height else { continue }
                                for kx in 0..<3 {
                                    let ix = 2 * ox - 1 + kx
                                    guard ix >= 0 && ix < width else { continue }
                                    let v = x[(ic * height + iy) * width + ix]
                                    let row = w.baseAddress! + (ic * 9 + ky * 3 + kx) * o
                                    for out in 0..<o { acc[out] += row[out] * v }
                                }
                            }
                        }
                        for out in 0..<o { y[(out * oh + oy) * ow + ox] = acc[out] }
                    }
                }
            }
        }
        return y
    }

    /// 3×3 transposed convolution, stride 2, padding 1, output padding 1,
    /// (C, H, W) → (O, 2H, 2W): each output accumulates its bias, then input
    /// channels, kernel rows, kernel columns in turn (those that reach it:
    /// 2·iy − 1 + ky = oy), with the weights as (C, 3, 3, O).
    func transposedConvolution(_ layer: String, _ x: [Float], inputs c: Int, outputs o: Int, height: Int, width: Int) -> [Float] {
        let w = tensors[layer + ".weight"]!, b = tensors[layer + ".bias"]!
        let (oh, ow) = (2 * height, 2 * width)
        var y = [Float](repeating: 0, count: o * oh * ow)
        var acc = [Float](repeating: 0, count: o)
        w.withUnsafeBufferPointer { w in
            acc.withUnsafeMutableBufferPointer { acc in
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        for out in 0..<o { acc[out] = b[out] }
                        for ic in 0..<c {
                            for ky in 0..<3 {
                                let ty = oy + 1 - ky
                                guard ty >= 0 && ty % 2 == 0 && ty / 2 < height else { continue }
                                for kx in 0..<3 {
                                    let tx = ox + 1 - kx
                                    guard tx >= 0 && tx % 2 == 0 && tx / 2 < width else { continue }
                                    let v = x[(ic * height + ty / 2) * width + tx / 2]
                                    let row = w.baseAddress! + (ic * 9 + ky * 3 + kx) * o
                                    for out in 0..<o { acc[out] += row[out] * v }
                                }
                            }
                        }
                        for out in 0..<o { y[(out * oh + oy) * ow + ox] = acc[out] }
                    }
                }
            }
        }
        return y
    }
}
