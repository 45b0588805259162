import _Differentiation
import TensorCore

/// PyTorch's `nn.Conv2d` parameters: weight (O, C, kh, kw), bias (O). Stride
/// and padding belong to the architecture and are passed at the call.
public struct Conv2D: Differentiable, AdditiveArithmetic, ParameterWalking {
    public var weight: Tensor  // (O, C, kh, kw)
    public var bias: Tensor    // (O)

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// PyTorch's default initialisation: uniform in ±1/√(C·kh·kw).
    public init(inputChannels c: Int, outputChannels o: Int, kernel k: Int, stream: RandomStream) {
        let bound = 1 / Float(c * k * k).squareRoot()
        weight = Tensor(uniformFrom: stream, shape: [o, c, k, k], low: -bound, high: bound)
        bias = Tensor(uniformFrom: stream, shape: [o], low: -bound, high: bound, offset: o * c * k * k)
    }

    @differentiable(reverse)
    public func callAsFunction(_ x: Tensor, stride: Int, padding: Int) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }

    /// relu(conv(x)), fused.
    @differentiable(reverse)
    public func relu(_ x: Tensor, stride: Int, padding: Int) -> Tensor {
        conv2dReLU(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }
}

/// PyTorch's `nn.ConvTranspose2d` parameters: weight (C, O, kh, kw), bias (O).
public struct ConvTranspose2D: Differentiable, AdditiveArithmetic, ParameterWalking {
    public var weight: Tensor  // (C, O, kh, kw)
    public var bias: Tensor    // (O)

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// PyTorch's default initialisation: its fan-in for a transposed
    /// convolution is weight.size(1)·kh·kw = O·kh·kw.
    public init(inputChannels c: Int, outputChannels o: Int, kernel k: Int, stream: RandomStream) {
        let bound = 1 / Float(o * k * k).squareRoot()
        weight = Tensor(uniformFrom: stream, shape: [c, o, k, k], low: -bound, high: bound)
        bias = Tensor(uniformFrom: stream, shape: [o], low: -bound, high: bound, offset: c * o * k * k)
    }

    @differentiable(reverse)
    public func callAsFunction(_ x: Tensor, stride: Int, padding: Int, outputPadding: Int) -> Tensor {
        convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    /// relu(convTranspose(x)), fused.
    @differentiable(reverse)
    public func relu(_ x: Tensor, stride: Int, padding: Int, outputPadding: Int) -> Tensor {
        convTranspose2dReLU(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }
}

/// The convolutional VAE of DESIGN.md §4, for C×H×W images with H and W
/// divisible by 4: encoder Conv(C→c1, 3×3, stride 2, pad 1) ReLU,
/// Conv(c1→c2) ReLU, flatten, Dense to μ and to log σ²; decoder Dense to
/// c2×H/4×W/4 ReLU, ConvTranspose(c2→c1, 3×3, stride 2, pad 1, output pad 1)
/// ReLU, ConvTranspose(c1→C) to logits or means (and, for a learned-variance
/// Gaussian, a second ConvTranspose head to log σ²). Names follow the golden
/// module (`enc.conv1`, …, `dec.deconv2`; the variance head `dec.deconv2_logvar`).
/// Legend: B batch, D = C·H·W, Z latent, F = c2·H/4·W/4.
public struct ConvVAE: VariationalAutoencoder {
    public var conv1: Conv2D                       // (c1, C, 3, 3)
    public var conv2: Conv2D                       // (c2, c1, 3, 3)
    public var fcMean: Dense                       // (Z, F)
    public var fcLogVariance: Dense                // (Z, F)
    public var fc: Dense                           // (F, Z)
    public var deconv1: ConvTranspose2D            // (c2, c1, 3, 3)
    public var deconv2: ConvTranspose2D            // (c1, C, 3, 3)
    /// (c1, C, 3, 3) for a learned-variance Gaussian; (c1, 0, 3, 3) and left
    /// out of checkpoints otherwise.
    public var deconv2LogVariance: ConvTranspose2D
    /// The input images' shape: a constant, not walked (see `ImageShape`).
    public var geometry: ImageShape

    public init(channels: Int, height: Int, width: Int, convChannels: (Int, Int), latentSize: Int,
                learnsVariance: Bool = false, seed: UInt64) {
        precondition(height % 4 == 0 && width % 4 == 0 && height >= 4 && width >= 4,
                     "the conv VAE needs H and W divisible by 4 (got \(height)×\(width))")
        let (c1, c2) = convChannels
        let features = c2 * (height / 4) * (width / 4)
        func stream(_ layer: UInt32) -> RandomStream { RandomStream(seed: seed, domain: .initialization, layer) }
        conv1 = Conv2D(inputChannels: channels, outputChannels: c1, kernel: 3, stream: stream(0))
        conv2 = Conv2D(inputChannels: c1, outputChannels: c2, kernel: 3, stream: stream(1))
        fcMean = Dense(inputSize: features, outputSize: latentSize, stream: stream(2))
        fcLogVariance = Dense(inputSize: features, outputSize: latentSize, stream: stream(3))
        fc = Dense(inputSize: latentSize, outputSize: features, stream: stream(4))
        deconv1 = ConvTranspose2D(inputChannels: c2, outputChannels: c1, kernel: 3, stream: stream(5))
        deconv2 = ConvTranspose2D(inputChannels: c1, outputChannels: channels, kernel: 3, stream: stream(6))
        deconv2LogVariance = ConvTranspose2D(inputChannels: c1, outputChannels: learnsVariance ? channels : 0,
                                             kernel: 3, stream: stream(7))
        geometry = ImageShape(channels: channels, height: height, width: width)
    }

    @differentiable(reverse)
    public func encode(_ x: Tensor) -> Posterior {
        let g = withoutDerivative(at: geometry)
        let b = withoutDerivative(at: x.shape[0])
        let image = x.reshaped([b, g.channels, g.height, g.width])
        let h1 = conv1.relu(image, stride: 2, padding: 1)                 // (B, c1, H/2, W/2)
        let h2 = conv2.relu(h1, stride: 2, padding: 1)                    // (B, c2, H/4, W/4)
        let flat = h2.reshaped([b, withoutDerivative(at: h2).count / max(b, 1)])
        return Posterior(mean: fcMean(flat), logVariance: fcLogVariance(flat))
    }

    @differentiable(reverse)
    public func decode(_ z: Tensor) -> DecoderOutput {
        let g = withoutDerivative(at: geometry)
        let b = withoutDerivative(at: z.shape[0])
        let c2 = withoutDerivative(at: deconv1.weight.shape[0])
        let h = fc.relu(z).reshaped([b, c2, g.height / 4, g.width / 4])
        let h1 = deconv1.relu(h, stride: 2, padding: 1, outputPadding: 1)   // (B, c1, H/2, W/2)
        let d = withoutDerivative(at: g.channels * g.height * g.width)
        let location = deconv2(h1, stride: 2, padding: 1, outputPadding: 1).reshaped([b, d])
        let logVariance = deconv2LogVariance(h1, stride: 2, padding: 1, outputPadding: 1)
        return DecoderOutput(location: location,
                             logVariance: logVariance.reshaped([b, withoutDerivative(at: logVariance).count / max(b, 1)]))
    }

    public var latentSize: Int { fcMean.outputSize }
    public var dataSize: Int { geometry.channels * geometry.height * geometry.width }
    public var learnsVariance: Bool { deconv2LogVariance.weight.shape[1] > 0 }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try conv1.walkParameters { try visit("enc.conv1." + $0, &$1) }
        try conv2.walkParameters { try visit("enc.conv2." + $0, &$1) }
        try fcMean.walkParameters { try visit("enc.fc_mu." + $0, &$1) }
        try fcLogVariance.walkParameters { try visit("enc.fc_logvar." + $0, &$1) }
        try fc.walkParameters { try visit("dec.fc." + $0, &$1) }
        try deconv1.walkParameters { try visit("dec.deconv1." + $0, &$1) }
        try deconv2.walkParameters { try visit("dec.deconv2." + $0, &$1) }
        try deconv2LogVariance.walkParameters { try visit("dec.deconv2_logvar." + $0, &$1) }
    }
}
