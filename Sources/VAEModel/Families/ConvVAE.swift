import _Differentiation
import TensorCore

/// The convolutional VAE (docs/ARCHITECTURE.md, "The model"), with any number N ≥ 1 of stride-2
/// stages, for C×H×W images with H and W divisible by 2^N. Encoder:
/// Conv(C→c1, 3×3, stride 2, pad 1) ReLU, …, Conv(c(N−1)→cN) ReLU, flatten,
/// Dense to μ and to log σ². Decoder, the mirror: Dense to cN×H/2^N×W/2^N
/// ReLU, ConvTranspose(cN→c(N−1), 3×3, stride 2, pad 1, output pad 1) ReLU,
/// …, ConvTranspose(c1→C) to logits or means (and, for a learned-variance
/// Gaussian, a second ConvTranspose head to log σ²). Names follow the PyTorch
/// module (`enc.conv1` … `enc.convN`, `dec.deconv1` … `dec.deconvN`, the
/// variance head `dec.deconvN_logvar`), with PyTorch's layouts.
///
/// Conditional (Sohn et al. 2015) with K > 0 classes: the one-hot label
/// enters the encoder as K constant channels after the image's (conv1 takes
/// C + K channels) and the decoder beside z (the Dense takes [z, one-hot]).
///
/// Between the convolutions images are channels-last (B, H, W, C), the
/// layout the kernels run fastest on. The parameters are those of the
/// PyTorch module, which flattens (C, H, W): the dense layers next to the
/// convolutions permute their weights to the images' order, not the images.
/// Legend: B batch, D = C·H·W, Z latent, K classes, F = cN·H/2^N·W/2^N.
public struct ConvVAE: VariationalAutoencoder {
    /// conv1 … convN; conv i: (c_i, c_(i−1), 3, 3), c_0 = C + K.
    public var encoder: ConvStages<Conv2D>
    public var fcMean: Dense                       // (Z, F)
    public var fcLogVariance: Dense                // (Z, F)
    public var fc: Dense                           // (F, Z + K)
    /// deconv1 … deconv(N−1), each followed by ReLU: deconv i (c_(N−i+1), c_(N−i), 3, 3).
    public var decoder: ConvStages<ConvTranspose2D>
    /// deconvN: (c1, C, 3, 3), to logits or means.
    public var output: ConvTranspose2D
    /// The likelihood's parameters 1…P−1: (c1, (P−1)·C, 3, 3), named
    /// `dec.deconvN_<head>` (`_logvar` for a learned-variance Gaussian);
    /// (c1, 0, 3, 3) and left out of checkpoints when P = 1.
    public var outputAuxiliary: ConvTranspose2D
    /// The auxiliary head's checkpoint name (a constant, not walked).
    public var auxiliaryHeadName: ConstantName
    /// The input images' shape: a constant, not walked (see `ImageShape`).
    public var geometry: ImageShape
    /// The encoder's value for each missing input (C·H·W), learned
    /// (`--missing-fill learned`); (0) and left out of checkpoints with the
    /// zero fill.
    public var missingFill: Tensor

    /// Layer streams: conv i ↦ i − 1, then fc_mu, fc_logvar, fc, deconv 1…N, the
    /// variance head (for two stages, the streams of the two-stage model before).
    public init(channels: Int, height: Int, width: Int, convChannels: [Int], latentSize: Int,
                auxiliaryOutputs: Int = 0, auxiliaryHeadName: String = "aux", classes: Int = 0,
                learnedMissingFill: Bool = false, seed: UInt64) {
        let n = convChannels.count
        precondition(n >= 1 && height % (1 << n) == 0 && width % (1 << n) == 0 && height > 0 && width > 0,
                     "the conv VAE needs H and W divisible by 2^\(n) (got \(height)×\(width))")
        let features = convChannels[n - 1] * (height >> n) * (width >> n)
        func stream(_ layer: Int) -> RandomStream { RandomStream(seed: seed, domain: .initialization, UInt32(layer)) }
        let inputs = [channels + classes] + convChannels.dropLast()
        encoder = ConvStages((0..<n).map { i in
            Conv2D(inputChannels: inputs[i], outputChannels: convChannels[i], kernel: 3, stream: stream(i))
        })
        fcMean = Dense(inputSize: features, outputSize: latentSize, stream: stream(n))
        fcLogVariance = Dense(inputSize: features, outputSize: latentSize, stream: stream(n + 1))
        fc = Dense(inputSize: latentSize + classes, outputSize: features, stream: stream(n + 2))
        let reversed = Array(convChannels.reversed())   // cN … c1
        decoder = ConvStages((0..<(n - 1)).map { i in
            ConvTranspose2D(inputChannels: reversed[i], outputChannels: reversed[i + 1], kernel: 3,
                            stream: stream(n + 3 + i))
        })
        output = ConvTranspose2D(inputChannels: convChannels[0], outputChannels: channels, kernel: 3,
                                 stream: stream(2 * n + 2))
        outputAuxiliary = ConvTranspose2D(inputChannels: convChannels[0], outputChannels: auxiliaryOutputs * channels,
                                          kernel: 3, stream: stream(2 * n + 3))
        self.auxiliaryHeadName = ConstantName(auxiliaryHeadName)
        geometry = ImageShape(channels: channels, height: height, width: width)
        missingFill = Tensor(zeros: [learnedMissingFill ? channels * height * width : 0])
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, condition: Tensor, on backend: Backend) -> Posterior {
        let g = withoutDerivative(at: geometry)
        // x is data: nothing here is differentiated with respect to it.
        return encodeImage(withoutDerivative(at: Self.conditionedImage(x, condition: condition, geometry: g, on: backend)),
                           on: backend)
    }

    @differentiable(reverse, wrt: self)
    public func encode(_ x: Tensor, mask: Tensor?, condition: Tensor, on backend: Backend) -> Posterior {
        guard let mask, withoutDerivative(at: missingFill.count) > 0 else { return encode(x, condition: condition, on: backend) }
        let g = withoutDerivative(at: geometry)
        return encodeImage(Self.conditionedImage(fillingMissing(x, mask: mask, fill: missingFill), condition: condition,
                                                 geometry: g, on: backend), on: backend)
    }

    /// The encoder from its input image, (B, H, W, C + K) channels last: with
    /// respect to the image too when it depends on the model (a learned fill
    /// of missing values), to the model alone when it is data (then the first
    /// convolution computes no input gradient, through ConvStages' derivative
    /// with respect to its parameters).
    @differentiable(reverse, wrt: (self, image))
    @differentiable(reverse, wrt: self)
    func encodeImage(_ image: Tensor, on backend: Backend) -> Posterior {
        let b = withoutDerivative(at: image.shape[0])
        let h = encoder(image, on: backend)                                          // (B, H/2^N, W/2^N, cN)
        // PyTorch flattens (cN, H/2^N, W/2^N): the dense layers take the
        // channels-last flattening with their weights' columns in its order.
        let top = withoutDerivative(at: h.shape[3])
        let flat = h.reshaped([b, withoutDerivative(at: h).count / max(b, 1)])
        return Posterior(mean: fcMean(channelsLast: flat, channels: top, on: backend),
                         logVariance: fcLogVariance(channelsLast: flat, channels: top, on: backend))
    }

    /// (B, H, W, C + K): the channels-last image with the condition's K
    /// constant channels after its own.
    @differentiable(reverse, wrt: x)
    static func conditionedImage(_ x: Tensor, condition: Tensor, geometry g: ImageShape, on backend: Backend) -> Tensor {
        let b = withoutDerivative(at: x.shape[0])
        let image = channelsLast(x.reshaped([b, g.channels, g.height, g.width]), on: backend)   // (B, H, W, C)
        let k = condition.shape.last ?? 0
        guard k > 0 else { return image }
        let pixels = g.height * g.width
        return concatenatingLastDimension(image.reshaped([b * pixels, g.channels]), condition.repeatingRows(pixels))
            .reshaped([b, g.height, g.width, g.channels + k])
    }

    @differentiable(reverse, wrt: (self, z))
    public func decode(_ z: Tensor, condition: Tensor, on backend: Backend) -> DecoderOutput {
        let g = withoutDerivative(at: geometry)
        let b = withoutDerivative(at: z.shape[0])
        let n = withoutDerivative(at: encoder.count)
        let top = withoutDerivative(at: fc.outputSize / max((g.height >> n) * (g.width >> n), 1))
        let input = concatenatingLastDimension(z, condition)                       // (B, Z + K)
        // (B, H/2^N, W/2^N, cN): the dense layer's rows in channels-last order.
        let h = fc.reluChannelsLast(input, channels: top, on: backend).reshaped([b, g.height >> n, g.width >> n, top])
        let h1 = decoder(h, on: backend)                                             // (B, H/2, W/2, c1)
        let d = withoutDerivative(at: g.channels * g.height * g.width)
        let location = channelsFirst(output(h1, stride: 2, padding: 1, outputPadding: 1, on: backend), on: backend)
            .reshaped([b, d])
        // (B, (P−1)·C, H, W): parameter-major, as `DecoderOutput.auxiliary` lays it out.
        let auxiliary = channelsFirst(outputAuxiliary(h1, stride: 2, padding: 1, outputPadding: 1, on: backend),
                                      on: backend)
        return DecoderOutput(location: location,
                             auxiliary: auxiliary.reshaped([b, withoutDerivative(at: auxiliary).count / max(b, 1)]))
    }

    public var latentSize: Int { fcMean.outputSize }
    public var dataSize: Int { geometry.channels * geometry.height * geometry.width }
    public var classes: Int { fc.inputSize - latentSize }
    /// P − 1: the likelihood's parameters per dimension beyond the first.
    public var auxiliaryOutputs: Int { outputAuxiliary.weight.shape[1] / max(geometry.channels, 1) }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        let n = encoder.count
        try encoder.walkParameters { try visit("enc.conv" + $0, &$1) }
        try fcMean.walkParameters { try visit("enc.fc_mu." + $0, &$1) }
        try fcLogVariance.walkParameters { try visit("enc.fc_logvar." + $0, &$1) }
        try fc.walkParameters { try visit("dec.fc." + $0, &$1) }
        try decoder.walkParameters { try visit("dec.deconv" + $0, &$1) }
        try output.walkParameters { try visit("dec.deconv\(n)." + $0, &$1) }
        try outputAuxiliary.walkParameters { try visit("dec.deconv\(n)_\(auxiliaryHeadName)." + $0, &$1) }
        try visit("enc.missing_fill", &missingFill)
    }
}

extension ConvVAE {
    /// The conv family: one stride-2 convolution per entry of `channels`,
    /// mirrored by transposed convolutions, for C×H×W images with H and W
    /// divisible by 2^stages.
    public struct Options: ArchitectureOptions {
        public static let family = "conv"
        public static let needsImages = true
        /// c1 … cN: channels of the encoder's stages.
        public var channels = [32, 64]
        public var latentSize = 16
        public var likelihood = Likelihood.bernoulli
        public var conditionalClasses = 0
        /// Learned constants for the encoder's missing inputs (`--missing-fill learned`).
        public var learnedMissingFill = false

        public init(channels: [Int] = [32, 64], latentSize: Int = 16, likelihood: Likelihood = .bernoulli,
                    conditionalClasses: Int = 0) {
            self.channels = channels
            self.latentSize = latentSize
            self.likelihood = likelihood
            self.conditionalClasses = conditionalClasses
        }

        public func validate(for image: ImageShape) throws {
            guard !channels.isEmpty, channels.allSatisfy({ $0 >= 1 }), latentSize >= 1, conditionalClasses >= 0 else {
                throw ArchitectureError.invalidOptions(
                    family: Self.family, detail: "needs at least one positive channel count and a latent size of at least 1 "
                        + "(got channels \(channels), latent size \(latentSize))")
            }
            let n = channels.count
            guard n < 31, image.height % (1 << n) == 0, image.width % (1 << n) == 0, image.height > 0, image.width > 0 else {
                throw ArchitectureError.unsupportedImage(family: Self.family, image: image,
                                                         requirement: .sidesDivisible(stages: n))
            }
        }

        public func summary(for image: ImageShape) -> String {
            "conv \(image) → \(channels.map(String.init).joined(separator: ", ")) → \(latentSize)"
                + (conditionalClasses > 0 ? ", conditional on \(conditionalClasses) classes" : "")
        }

        public func parameterCount(for image: ImageShape) -> Int {
            let (c, z, k, n) = (image.channels, latentSize, conditionalClasses, channels.count)
            let f = channels[n - 1] * (image.height >> n) * (image.width >> n)
            let inputs = [c + k] + channels.dropLast()
            var count = 0
            for i in 0..<n { count += channels[i] * inputs[i] * 9 + channels[i] }         // enc.conv
            for i in 1..<n { count += channels[i] * channels[i - 1] * 9 + channels[i - 1] } // dec.deconv
            count += 2 * (z * f + z) + (f * (z + k) + f)                                   // fc_mu, fc_logvar, fc
            let head = channels[0] * c * 9 + c
            return count + head + likelihood.auxiliaryOutputs * head + (learnedMissingFill ? image.size : 0)
        }

        public func makeModel(for image: ImageShape, seed: UInt64) -> ConvVAE {
            ConvVAE(channels: image.channels, height: image.height, width: image.width,
                    convChannels: channels, latentSize: latentSize,
                    auxiliaryOutputs: likelihood.auxiliaryOutputs, auxiliaryHeadName: likelihood.auxiliaryHeadName,
                    classes: conditionalClasses, learnedMissingFill: learnedMissingFill, seed: seed)
        }

        public var architecture: Architecture { .conv(self) }

        enum CodingKeys: String, CodingKey { case channels, latentSize, likelihood, conditionalClasses, missingFill }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            channels = try c.decode([Int].self, forKey: .channels)
            latentSize = try c.decode(Int.self, forKey: .latentSize)
            likelihood = try c.decode(Likelihood.self, forKey: .likelihood)
            conditionalClasses = try c.decodeIfPresent(Int.self, forKey: .conditionalClasses) ?? 0
            learnedMissingFill = try c.decodeIfPresent(MissingFill.self, forKey: .missingFill) == .learned
        }

        /// An unconditional model's options are written as before the
        /// conditional VAE existed.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(channels, forKey: .channels)
            try c.encode(latentSize, forKey: .latentSize)
            try c.encode(likelihood, forKey: .likelihood)
            if conditionalClasses > 0 { try c.encode(conditionalClasses, forKey: .conditionalClasses) }
            if learnedMissingFill { try c.encode(MissingFill.learned, forKey: .missingFill) }
        }
    }
}
