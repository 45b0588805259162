import _Differentiation
import TensorCore

/// The convolutional VAE of DESIGN.md §4, for C×H×W images with H and W
/// divisible by 4: encoder Conv(C→c1, 3×3, stride 2, pad 1) ReLU,
/// Conv(c1→c2) ReLU, flatten, Dense to μ and to log σ²; decoder Dense to
/// c2×H/4×W/4 ReLU, ConvTranspose(c2→c1, 3×3, stride 2, pad 1, output pad 1)
/// ReLU, ConvTranspose(c1→C) to logits or means (and, for a learned-variance
/// Gaussian, a second ConvTranspose head to log σ²). Names follow the golden
/// module (`enc.conv1`, …, `dec.deconv2`; the variance head `dec.deconv2_logvar`).
/// Between the convolutions images are channels-last (B, H, W, C), the
/// layout the kernels run fastest on; flattening uses PyTorch's (C, H, W)
/// order, so the parameters are those of the PyTorch module.
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

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, on backend: Backend) -> Posterior {
        let g = withoutDerivative(at: geometry)
        let b = withoutDerivative(at: x.shape[0])
        let image = channelsLast(x.reshaped([b, g.channels, g.height, g.width]), on: backend)   // (B, H, W, C)
        let h1 = conv1.relu(image, stride: 2, padding: 1, on: backend)              // (B, H/2, W/2, c1)
        let h2 = conv2.relu(h1, stride: 2, padding: 1, on: backend)                 // (B, H/4, W/4, c2)
        // PyTorch flattens (c2, H/4, W/4): back to channels first.
        let flat = channelsFirst(h2, on: backend).reshaped([b, withoutDerivative(at: h2).count / max(b, 1)])
        return Posterior(mean: fcMean(flat, on: backend), logVariance: fcLogVariance(flat, on: backend))
    }

    @differentiable(reverse)
    public func decode(_ z: Tensor, on backend: Backend) -> DecoderOutput {
        let g = withoutDerivative(at: geometry)
        let b = withoutDerivative(at: z.shape[0])
        let c2 = withoutDerivative(at: deconv1.weight.shape[0])
        let h = channelsLast(fc.relu(z, on: backend).reshaped([b, c2, g.height / 4, g.width / 4]), on: backend)  // (B, H/4, W/4, c2)
        let h1 = deconv1.relu(h, stride: 2, padding: 1, outputPadding: 1, on: backend)              // (B, H/2, W/2, c1)
        let d = withoutDerivative(at: g.channels * g.height * g.width)
        let location = channelsFirst(deconv2(h1, stride: 2, padding: 1, outputPadding: 1, on: backend), on: backend)
            .reshaped([b, d])
        let logVariance = channelsFirst(deconv2LogVariance(h1, stride: 2, padding: 1, outputPadding: 1, on: backend),
                                        on: backend)
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

extension ConvVAE {
    /// The conv family: two stride-2 convolutions of `channels[0]` and
    /// `channels[1]` channels, mirrored by two transposed convolutions, for
    /// C×H×W images with H and W divisible by 4.
    public struct Options: ArchitectureOptions {
        public static let family = "conv"
        /// c1, c2: channels of the two convolutions.
        public var channels = [32, 64]
        public var latentSize = 16
        public var likelihood = Likelihood.bernoulli

        public init(channels: [Int] = [32, 64], latentSize: Int = 16, likelihood: Likelihood = .bernoulli) {
            self.channels = channels
            self.latentSize = latentSize
            self.likelihood = likelihood
        }

        public func validate(for image: ImageShape) throws {
            guard channels.count == 2, channels.allSatisfy({ $0 >= 1 }), latentSize >= 1 else {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "needs two positive channel counts and a latent size of at least 1 "
                        + "(got channels \(channels), latent size \(latentSize))")
            }
            guard image.height % 4 == 0, image.width % 4 == 0, image.height >= 4, image.width >= 4 else {
                throw ArchitectureError.unsupportedImage(family: Self.family, image: image,
                                                         requirement: "image height and width divisible by 4")
            }
        }

        public func summary(for image: ImageShape) -> String {
            "conv \(image) → \(channels.map(String.init).joined(separator: ", ")) → \(latentSize)"
        }

        public func parameterCount(for image: ImageShape) -> Int {
            let (c, c1, c2, z) = (image.channels, channels[0], channels[1], latentSize)
            let f = c2 * (image.height / 4) * (image.width / 4)
            let head = c1 * c * 9 + c
            return (c1 * c * 9 + c1) + (c2 * c1 * 9 + c2) + 2 * (z * f + z) + (f * z + f)
                + (c2 * c1 * 9 + c1) + head + (likelihood.learnsVariance ? head : 0)
        }

        public func makeModel(for image: ImageShape, seed: UInt64) -> ConvVAE {
            ConvVAE(channels: image.channels, height: image.height, width: image.width,
                    convChannels: (channels[0], channels[1]), latentSize: latentSize,
                    learnsVariance: likelihood.learnsVariance, seed: seed)
        }

        public var architecture: Architecture { .conv(self) }
    }
}
