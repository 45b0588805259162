import _Differentiation

// 2-D convolutions and transposed convolutions on channels-last images, each
// forward op followed by its VJPs. Semantics and weight layouts are PyTorch's
// (F.conv2d with weight (O, C, kh, kw); F.conv_transpose2d with weight
// (C, O, kh, kw)); images are (B, H, W, C) in memory, the layout oneDNN's
// fast kernels take without reorders between layers.
// Legend: B batch, C input channels, O output channels, H×W input size,
// Ho×Wo output size.
//
// On oneDNN, a transposed convolution runs on the primitives of the
// convolution it is the adjoint of (input (B, Ho, Wo, O) → output
// (B, H, W, C), weights the same tensor read as (C, O, kh, kw) = OIHW):
// its forward pass is that convolution's backward-data pass, its input
// gradient that convolution's forward pass, its weight gradient that
// convolution's weight gradient with the roles of input and output swapped.
// (oneDNN 2.6's own deconvolution has a slow forward pass.) On OpenBLAS the
// ops run NCHW im2col kernels between transposes.

// MARK: - layout changes

/// (B, C, H, W) → (B, H, W, C): channels last.
@differentiable(reverse)
public func channelsLast(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "channelsLast of shape \(x.shape)")
    return permuted(x, to: [x.shape[0], x.shape[2], x.shape[3], x.shape[1]], channelsLast: true)
}

@derivative(of: channelsLast)
@usableFromInline
func _vjpChannelsLast(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (channelsLast(x), { dy in dy.isSymbolicZero ? .zero : channelsFirst(dy) })
}

/// (B, H, W, C) → (B, C, H, W): channels first.
@differentiable(reverse)
public func channelsFirst(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "channelsFirst of shape \(x.shape)")
    return permuted(x, to: [x.shape[0], x.shape[3], x.shape[1], x.shape[2]], channelsLast: false)
}

@derivative(of: channelsFirst)
@usableFromInline
func _vjpChannelsFirst(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (channelsFirst(x), { dy in dy.isSymbolicZero ? .zero : channelsLast(dy) })
}

/// Moves the channel axis; with one channel or one pixel the order of the
/// elements does not change, so only the shape does.
func permuted(_ x: Tensor, to shape: [Int], channelsLast: Bool) -> Tensor {
    let b = x.shape[0]
    let (c, p) = channelsLast ? (x.shape[1], x.shape[2] * x.shape[3]) : (x.shape[3], x.shape[1] * x.shape[2])
    if c == 1 || p == 1 { return Tensor(shape: shape, scalars: x.scalars) }
    return Tensor(shape: shape) { out in
        x.scalars.withUnsafeBufferPointer { src in
            for n in 0..<b {
                let s = src.baseAddress! + n * c * p, d = out.baseAddress! + n * c * p
                if channelsLast {
                    for ch in 0..<c { for q in 0..<p { d[q * c + ch] = s[ch * p + q] } }
                } else {
                    for q in 0..<p { for ch in 0..<c { d[ch * p + q] = s[q * c + ch] } }
                }
            }
        }
    }
}

// MARK: - conv2d

/// Cross-correlation as PyTorch's `F.conv2d`: x (B, H, W, C), weight
/// (O, C, kh, kw), bias (O) → (B, Ho, Wo, O).
@differentiable(reverse)
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
    ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: false, on: backend).y
}

@derivative(of: conv2d)
@usableFromInline
func _vjpConv2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: false, on: backend)
    return (f.y, { dy in ConvolutionOps.backward(dy, f, weight: weight, bias: bias, inputGradient: true, on: backend) })
}

/// The derivative when x is data (the first layer): no input gradient.
@derivative(of: conv2d, wrt: (weight, bias))
@usableFromInline
func _vjpConv2dParameters(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let f = ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: false, on: backend)
    return (f.y, { dy in
        let (_, dw, db) = ConvolutionOps.backward(dy, f, weight: weight, bias: bias, inputGradient: false, on: backend)
        return (dw, db)
    })
}

// MARK: - conv2d + ReLU (fused)

/// relu(conv2d(x)), the ReLU applied by the kernel's epilogue.
@differentiable(reverse)
public func conv2dReLU(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
    ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: true, on: backend).y
}

@derivative(of: conv2dReLU)
@usableFromInline
func _vjpConv2dReLU(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: true, on: backend)
    return (f.y, { dy in
        ConvolutionOps.backward(reluBackward(dy, output: f.y), f, weight: weight, bias: bias, inputGradient: true,
                                on: backend)
    })
}

@derivative(of: conv2dReLU, wrt: (weight, bias))
@usableFromInline
func _vjpConv2dReLUParameters(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let f = ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: true, on: backend)
    return (f.y, { dy in
        let (_, dw, db) = ConvolutionOps.backward(reluBackward(dy, output: f.y), f, weight: weight, bias: bias,
                                                  inputGradient: false, on: backend)
        return (dw, db)
    })
}

// MARK: - convTranspose2d

/// PyTorch's `F.conv_transpose2d`: x (B, H, W, C), weight (C, O, kh, kw),
/// bias (O) → (B, Ho, Wo, O) with Ho = (H−1)·stride − 2·padding + kh + outputPadding.
@differentiable(reverse)
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                            outputPadding: Int, on backend: Backend) -> Tensor {
    TransposedConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding,
                                     outputPadding: outputPadding, relu: false, on: backend).y
}

@derivative(of: convTranspose2d)
@usableFromInline
func _vjpConvTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int,
                         on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = TransposedConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding,
                                             outputPadding: outputPadding, relu: false, on: backend)
    return (f.y, { dy in TransposedConvolutionOps.backward(dy, f, weight: weight, bias: bias, on: backend) })
}

// MARK: - convTranspose2d + ReLU (fused)

/// relu(convTranspose2d(x)), the ReLU applied in the pass that adds the bias.
@differentiable(reverse)
public func convTranspose2dReLU(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                                outputPadding: Int, on backend: Backend) -> Tensor {
    TransposedConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding,
                                     outputPadding: outputPadding, relu: true, on: backend).y
}

@derivative(of: convTranspose2dReLU)
@usableFromInline
func _vjpConvTranspose2dReLU(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int,
                             on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = TransposedConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding,
                                             outputPadding: outputPadding, relu: true, on: backend)
    return (f.y, { dy in
        TransposedConvolutionOps.backward(reluBackward(dy, output: f.y), f, weight: weight, bias: bias, on: backend)
    })
}

// MARK: - kernels

/// An activation as a kernel takes it: its f32 values, or their bf16 rounding.
struct ActivationOperand {
    let values: Tensor
    let rounded: [UInt16]?

    init(_ tensor: Tensor, on backend: Backend) {
        values = tensor
        rounded = backend.bf16 ? backend.roundedToBF16(tensor.scalars) : nil
    }

    func withPointer<R>(_ body: (UnsafeRawPointer) -> R) -> R {
        if let rounded { return rounded.withUnsafeBytes { body($0.baseAddress!) } }
        return values.scalars.withUnsafeBytes { body($0.baseAddress!) }
    }
}

/// Weights in the layouts a oneDNN convolution's forward and backward-data
/// kernels take (reordered, and in bf16 rounded, once per forward pass).
struct PreparedWeights {
    let forward: [UInt8]
    let backwardData: [UInt8]?

    init(_ weight: Tensor, for primitive: DNNLConvolution, on backend: Backend) {
        var forward = [UInt8](repeating: 0, count: primitive.weightsBytes)
        var backwardData = primitive.backwardDataWeightsReorder == nil ? nil
            : [UInt8](repeating: 0, count: primitive.backwardDataWeightsBytes)
        backend.timingLayout {
            weight.scalars.withUnsafeBufferPointer { w in
                forward.withUnsafeMutableBytes { f in
                    if backwardData == nil {
                        primitive.prepareWeights(w.baseAddress!, into: f.baseAddress!, backwardData: nil)
                    } else {
                        backwardData!.withUnsafeMutableBytes { d in
                            primitive.prepareWeights(w.baseAddress!, into: f.baseAddress!, backwardData: d.baseAddress!)
                        }
                    }
                }
            }
        }
        self.forward = forward
        self.backwardData = backwardData
    }

    func withForward<R>(_ body: (UnsafeRawPointer) -> R) -> R { forward.withUnsafeBytes { body($0.baseAddress!) } }
    func withBackwardData<R>(_ body: (UnsafeRawPointer) -> R) -> R {
        (backwardData ?? forward).withUnsafeBytes { body($0.baseAddress!) }
    }
}

/// The geometry of a convolution from its channels-last input and PyTorch weights.
func convolutionKey(batch: Int, channels: Int, height: Int, width: Int, weight: Tensor, stride: Int, padding: Int,
                    outputHeight: Int, outputWidth: Int, relu: Bool, on backend: Backend) -> ConvolutionKey {
    ConvolutionKey(batch: batch, channels: channels, height: height, width: width,
                   outputChannels: weight.shape[0], kernelHeight: weight.shape[2], kernelWidth: weight.shape[3],
                   stride: stride, padding: padding, outputHeight: outputHeight, outputWidth: outputWidth,
                   bf16: backend.bf16, relu: relu)
}

/// The parameter gradients' destinations: the backend's gradient sink when
/// it holds these parameters, else fresh tensors.
struct ParameterGradientTargets {
    var weight: Tensor = .zero
    var bias: Tensor = .zero
    private let sink: GradientSink?
    private let weightSlot, biasSlot: (pointer: UnsafeMutablePointer<Float>, accumulate: Bool)?

    init(weight w: Tensor, bias b: Tensor, on backend: Backend) {
        sink = backend.gradientSink
        weightSlot = sink?.slot(for: w)
        biasSlot = sink?.slot(for: b)
        if weightSlot == nil { weight = Tensor(zeros: w.shape) }
        if biasSlot == nil { bias = Tensor(zeros: b.shape) }
    }

    /// Calls `body` with the two destinations (each written whole), then
    /// adds into sink slots that already held a gradient and checks them.
    mutating func fill(weightCount: Int, biasCount: Int,
                       _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        var weightScratch = (weightSlot?.accumulate ?? false) ? [Float](repeating: 0, count: weightCount) : []
        var biasScratch = (biasSlot?.accumulate ?? false) ? [Float](repeating: 0, count: biasCount) : []
        func destination(_ slot: (pointer: UnsafeMutablePointer<Float>, accumulate: Bool)?, _ scratch: inout [Float],
                         _ tensor: inout Tensor, _ use: (UnsafeMutablePointer<Float>) -> Void) {
            if let slot, !slot.accumulate { return use(slot.pointer) }
            if slot != nil { return scratch.withUnsafeMutableBufferPointer { use($0.baseAddress!) } }
            tensor.scalars.withUnsafeMutableBufferPointer { use($0.baseAddress!) }
        }
        destination(weightSlot, &weightScratch, &weight) { w in
            destination(biasSlot, &biasScratch, &bias) { b in body(w, b) }
        }
        for (slot, scratch, count) in [(weightSlot, weightScratch, weightCount), (biasSlot, biasScratch, biasCount)] {
            guard let slot else { continue }
            if slot.accumulate { for i in 0..<count { slot.pointer[i] += scratch[i] } }
            sink?.checkWritten(slot.pointer, count: count)
        }
    }
}

@usableFromInline
enum ConvolutionOps {
    @usableFromInline
    struct Forward {
        let y: Tensor  // (B, Ho, Wo, O)
        let x: ActivationOperand?
        let weights: PreparedWeights?
        let primitive: DNNLConvolution?
        let input: Tensor  // (B, H, W, C), for the im2col path
        let stride, padding: Int
    }

    static func outputSize(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        (size + 2 * padding - kernel) / stride + 1
    }

    @usableFromInline
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, relu: Bool,
                        on backend: Backend) -> Forward {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[3] == weight.shape[1],
                     "conv2d: input \(x.shape) (B, H, W, C) does not match weight \(weight.shape) (O, C, kh, kw)")
        precondition(bias.shape == [weight.shape[0]], "conv2d: bias \(bias.shape) for weight \(weight.shape)")
        precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride), padding \(padding)")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[0]
        let oh = outputSize(h, kernel: weight.shape[2], stride: stride, padding: padding)
        let ow = outputSize(w, kernel: weight.shape[3], stride: stride, padding: padding)
        precondition(oh >= 1 && ow >= 1, "conv2d: \(h)×\(w) input too small for a \(weight.shape[2])×\(weight.shape[3]) kernel")
        guard let dnnl = backend.dnnl, b > 0 else {
            let y = channelsLast(Im2colKernels.conv2dForward(channelsFirst(x), weight: weight, bias: bias, stride: stride,
                                                             padding: padding, relu: relu, on: backend))
            return Forward(y: y, x: nil, weights: nil, primitive: nil, input: x, stride: stride, padding: padding)
        }
        let primitive = dnnl.convolution(convolutionKey(batch: b, channels: c, height: h, width: w, weight: weight,
                                                        stride: stride, padding: padding, outputHeight: oh,
                                                        outputWidth: ow, relu: relu, on: backend))
        let operand = ActivationOperand(x, on: backend)
        let weights = PreparedWeights(weight, for: primitive, on: backend)
        let y = Tensor(shape: [b, oh, ow, o]) { y in
            bias.scalars.withUnsafeBufferPointer { pb in
                backend.timingKernel(flops: 2 * b * oh * ow * o * c * weight.shape[2] * weight.shape[3]) {
                    operand.withPointer { px in
                        weights.withForward { pw in
                            primitive.forward(source: px, weights: pw, bias: pb.baseAddress!, destination: y.baseAddress!)
                        }
                    }
                }
            }
        }
        return Forward(y: y, x: operand, weights: weights, primitive: primitive, input: x, stride: stride, padding: padding)
    }

    /// (dx or .zero, dW, db) for dy (B, Ho, Wo, O) (already masked by a fused ReLU).
    @usableFromInline
    static func backward(_ dy: Tensor, _ f: Forward, weight: Tensor, bias: Tensor, inputGradient: Bool,
                         on backend: Backend) -> (Tensor, Tensor, Tensor) {
        if dy.isSymbolicZero { return (.zero, .zero, .zero) }
        guard let primitive = f.primitive, let operand = f.x, let weights = f.weights else {
            let (dx, dw, db) = Im2colKernels.conv2dBackward(channelsFirst(dy), x: channelsFirst(f.input), weight: weight,
                                                            stride: f.stride, padding: f.padding,
                                                            inputGradient: inputGradient, on: backend)
            return (inputGradient ? channelsLast(dx) : .zero, dw, db)
        }
        let key = primitive.key
        let flops = 2 * key.batch * key.outputHeight * key.outputWidth * key.outputChannels * key.channels
            * key.kernelHeight * key.kernelWidth
        let gradient = ActivationOperand(dy, on: backend)
        var dx = Tensor.zero
        if inputGradient {
            dx = Tensor(shape: f.input.shape) { dx in
                backend.timingKernel(flops: flops) {
                    gradient.withPointer { pdy in
                        weights.withBackwardData { pw in primitive.backwardData(diffDestination: pdy, weights: pw, diffSource: dx.baseAddress!) }
                    }
                }
            }
        }
        var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
        var scratch = [UInt8](repeating: 0, count: primitive.diffWeightsBytes)
        targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
            backend.timingKernel(flops: flops) {
                operand.withPointer { px in
                    gradient.withPointer { pdy in
                        scratch.withUnsafeMutableBytes { s in
                            primitive.backwardWeights(source: px, diffDestination: pdy, diffWeights: dw, diffBias: db,
                                                      scratch: s.baseAddress!)
                        }
                    }
                }
            }
        }
        return (dx, targets.weight, targets.bias)
    }
}

@usableFromInline
enum TransposedConvolutionOps {
    @usableFromInline
    struct Forward {
        let y: Tensor  // (B, Ho, Wo, O)
        let x: ActivationOperand?
        let weights: PreparedWeights?
        /// The convolution this is the adjoint of: (B, Ho, Wo, O) → (B, H, W, C).
        let adjoint: DNNLConvolution?
        let input: Tensor
        let stride, padding: Int
    }

    @usableFromInline
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int,
                        relu: Bool, on backend: Backend) -> Forward {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[3] == weight.shape[0],
                     "convTranspose2d: input \(x.shape) (B, H, W, C) does not match weight \(weight.shape) (C, O, kh, kw)")
        precondition(bias.shape == [weight.shape[1]], "convTranspose2d: bias \(bias.shape) for weight \(weight.shape)")
        precondition(stride >= 1 && padding >= 0 && outputPadding >= 0 && outputPadding < stride,
                     "convTranspose2d: stride \(stride), padding \(padding), output padding \(outputPadding)")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[1]
        let oh = (h - 1) * stride - 2 * padding + weight.shape[2] + outputPadding
        let ow = (w - 1) * stride - 2 * padding + weight.shape[3] + outputPadding
        precondition(oh >= 1 && ow >= 1, "convTranspose2d: empty output for a \(h)×\(w) input")
        if o == 0 {  // an unused head
            return Forward(y: Tensor(zeros: [b, oh, ow, 0]), x: nil, weights: nil, adjoint: nil, input: x,
                           stride: stride, padding: padding)
        }
        guard let dnnl = backend.dnnl, b > 0 else {
            let y = channelsLast(Im2colKernels.convTransposeForward(channelsFirst(x), weight: weight, bias: bias,
                                                                    stride: stride, padding: padding,
                                                                    outputPadding: outputPadding, relu: relu, on: backend))
            return Forward(y: y, x: nil, weights: nil, adjoint: nil, input: x, stride: stride, padding: padding)
        }
        // The adjoint convolution maps the output shape back to the input shape.
        let adjoint = dnnl.convolution(convolutionKey(batch: b, channels: o, height: oh, width: ow, weight: weight,
                                                      stride: stride, padding: padding, outputHeight: h, outputWidth: w,
                                                      relu: false, on: backend))
        let operand = ActivationOperand(x, on: backend)
        let weights = PreparedWeights(weight, for: adjoint, on: backend)
        let flops = 2 * b * h * w * c * o * weight.shape[2] * weight.shape[3]
        let y = Tensor(shape: [b, oh, ow, o]) { y in
            backend.timingKernel(flops: flops) {
                operand.withPointer { px in
                    weights.withBackwardData { pw in adjoint.backwardData(diffDestination: px, weights: pw, diffSource: y.baseAddress!) }
                }
            }
            // Bias (and ReLU) on the channel-innermost output.
            bias.scalars.withUnsafeBufferPointer { pb in
                for pixel in 0 ..< b * oh * ow {
                    let row = y.baseAddress! + pixel * o
                    if relu {
                        for ch in 0..<o { row[ch] = Swift.max(row[ch] + pb[ch], 0) }
                    } else {
                        for ch in 0..<o { row[ch] += pb[ch] }
                    }
                }
            }
        }
        return Forward(y: y, x: operand, weights: weights, adjoint: adjoint, input: x, stride: stride, padding: padding)
    }

    /// (dx, dW, db) for dy (B, Ho, Wo, O) (already masked by a fused ReLU).
    @usableFromInline
    static func backward(_ dy: Tensor, _ f: Forward, weight: Tensor, bias: Tensor, on backend: Backend)
        -> (Tensor, Tensor, Tensor)
    {
        if dy.isSymbolicZero || weight.shape[1] == 0 { return (.zero, .zero, .zero) }
        guard let adjoint = f.adjoint, let operand = f.x, let weights = f.weights else {
            let y = channelsFirst(dy)
            let (dx, dw, db) = Im2colKernels.convTransposeBackward(y, x: channelsFirst(f.input), weight: weight,
                                                                   outputShape: y.shape, stride: f.stride,
                                                                   padding: f.padding, on: backend)
            return (channelsLast(dx), dw, db)
        }
        let key = adjoint.key
        let flops = 2 * key.batch * key.outputHeight * key.outputWidth * key.outputChannels * key.channels
            * key.kernelHeight * key.kernelWidth
        let gradient = ActivationOperand(dy, on: backend)
        let (o, pixels) = (weight.shape[1], dy.count / max(weight.shape[1], 1))
        // dx = the adjoint convolution of dy; its bias is zero here.
        let zeroBias = [Float](repeating: 0, count: key.outputChannels)
        let dx = Tensor(shape: f.input.shape) { dx in
            backend.timingKernel(flops: flops) {
                gradient.withPointer { pdy in
                    weights.withForward { pw in
                        zeroBias.withUnsafeBufferPointer {
                            adjoint.forward(source: pdy, weights: pw, bias: $0.baseAddress!, destination: dx.baseAddress!)
                        }
                    }
                }
            }
        }
        var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
        var scratch = [UInt8](repeating: 0, count: adjoint.diffWeightsBytes)
        var adjointBias = [Float](repeating: 0, count: key.outputChannels)
        targets.fill(weightCount: weight.count, biasCount: o) { dw, db in
            backend.timingKernel(flops: flops) {
                gradient.withPointer { pdy in
                    operand.withPointer { px in
                        scratch.withUnsafeMutableBytes { s in
                            adjointBias.withUnsafeMutableBufferPointer { ab in
                                adjoint.backwardWeights(source: pdy, diffDestination: px, diffWeights: dw,
                                                        diffBias: ab.baseAddress!, scratch: s.baseAddress!)
                            }
                        }
                    }
                }
            }
            // db (O) = Σ over every output pixel of dy, channel by channel.
            db.initialize(repeating: 0, count: o)
            dy.scalars.withUnsafeBufferPointer { g in
                for pixel in 0..<pixels {
                    let row = g.baseAddress! + pixel * o
                    for ch in 0..<o { db[ch] += row[ch] }
                }
            }
        }
        return (dx, targets.weight, targets.bias)
    }
}
