import _Differentiation
import CKernels

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
public func channelsLast(_ x: Tensor, on backend: Backend) -> Tensor {
    precondition(x.rank == 4, "channelsLast of shape \(x.shape)")
    return permuted(x, toChannelsLast: true, on: backend)
}

@derivative(of: channelsLast)
@usableFromInline
func _vjpChannelsLast(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (channelsLast(x, on: backend), { dy in dy.isSymbolicZero ? .zero : channelsFirst(dy, on: backend) })
}

/// (B, H, W, C) → (B, C, H, W): channels first.
@differentiable(reverse)
public func channelsFirst(_ x: Tensor, on backend: Backend) -> Tensor {
    precondition(x.rank == 4, "channelsFirst of shape \(x.shape)")
    return permuted(x, toChannelsLast: false, on: backend)
}

@derivative(of: channelsFirst)
@usableFromInline
func _vjpChannelsFirst(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (channelsFirst(x, on: backend), { dy in dy.isSymbolicZero ? .zero : channelsLast(dy, on: backend) })
}

/// A dense layer's weight whose input features are a channels-first image's
/// (C, P) read in channels-last order (P, C): w (H, C·P) → w′ (H, P·C),
/// w′[h, p·C + c] = w[h, c·P + p]. A layer on a flattened channels-last
/// image computes with w′ what PyTorch's computes with w on the flattened
/// channels-first one, with no permute of the image (nor of its gradient):
/// the weight is smaller than the batch's activations, and in cache.
@differentiable(reverse)
public func channelsLastColumns(_ w: Tensor, channels: Int, on backend: Backend) -> Tensor {
    permutedFeatures(w, channels: channels, columns: true, toChannelsLast: true, on: backend)
}

@derivative(of: channelsLastColumns)
@usableFromInline
func _vjpChannelsLastColumns(_ w: Tensor, channels: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> Tensor)
{
    (channelsLastColumns(w, channels: channels, on: backend), { dw in
        featureGradient(dw, of: w, channels: channels, columns: true, on: backend)
    })
}

/// The same for a layer whose outputs are such an image: w (C·P, …) →
/// w′ (P·C, …), row p·C + c of w′ being row c·P + p of w (a weight (C·P, I)
/// or a bias (C·P)).
@differentiable(reverse)
public func channelsLastRows(_ w: Tensor, channels: Int, on backend: Backend) -> Tensor {
    permutedFeatures(w, channels: channels, columns: false, toChannelsLast: true, on: backend)
}

@derivative(of: channelsLastRows)
@usableFromInline
func _vjpChannelsLastRows(_ w: Tensor, channels: Int, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (channelsLastRows(w, channels: channels, on: backend), { dw in
        featureGradient(dw, of: w, channels: channels, columns: false, on: backend)
    })
}

/// The gradient of `w` from that of its permuted copy, back in (C, P)
/// order: written into the gradient sink's slot when `w` is a parameter
/// there (as the kernels write theirs; the pullback then returns a symbolic
/// zero), else returned.
func featureGradient(_ dw: Tensor, of w: Tensor, channels: Int, columns: Bool, on backend: Backend) -> Tensor {
    if dw.isSymbolicZero { return .zero }
    guard let sink = backend.gradientSink, !keepsFeatureOrder(dw, channels: channels, columns: columns),
          let slot = sink.slot(for: w) else {
        return permutedFeatures(dw, channels: channels, columns: columns, toChannelsLast: false, on: backend)
    }
    if slot.accumulate {
        let back = permutedFeatures(dw, channels: channels, columns: columns, toChannelsLast: false, on: backend)
        back.scalars.withUnsafeBufferPointer { g in for i in 0..<g.count { slot.pointer[i] += g[i] } }
    } else {
        dw.scalars.withUnsafeBufferPointer { g in
            permuteFeatures(g.baseAddress!, shape: dw.shape, channels: channels, columns: columns, toChannelsLast: false,
                            into: slot.pointer, on: backend)
        }
    }
    sink.checkWritten(slot.pointer, count: dw.count)
    return .zero
}

/// Whether the permutation leaves the order as it is (one channel, or one pixel).
func keepsFeatureOrder(_ w: Tensor, channels c: Int, columns: Bool) -> Bool {
    let features = columns ? w.shape[w.rank - 1] : w.shape[0]
    precondition(c > 0 && features % c == 0, "\(features) features are not \(c) channels of equal size")
    return c == 1 || features == c || w.count == 0
}

/// The features (columns of a rank-2 tensor, or its rows, with what follows
/// each row) between (C, P) and (P, C) order.
func permutedFeatures(_ w: Tensor, channels c: Int, columns: Bool, toChannelsLast: Bool, on backend: Backend) -> Tensor {
    if keepsFeatureOrder(w, channels: c, columns: columns) { return w }
    return Tensor(shape: w.shape) { out in
        w.scalars.withUnsafeBufferPointer {
            permuteFeatures($0.baseAddress!, shape: w.shape, channels: c, columns: columns, toChannelsLast: toChannelsLast,
                            into: out.baseAddress!, on: backend)
        }
    }
}

func permuteFeatures(_ src: UnsafePointer<Float>, shape: [Int], channels c: Int, columns: Bool, toChannelsLast: Bool,
                     into out: UnsafeMutablePointer<Float>, on backend: Backend) {
    let count = shape.reduce(1, *)
    let features = columns ? shape[shape.count - 1] : shape[0]
    let p = features / c
    if columns {
        // Each row is a (C, P) image.
        permuteChannels(src, batch: count / features, channels: c, pixels: p, toChannelsLast: toChannelsLast, into: out,
                        on: backend)
    } else {
        // A (C, P) or (P, C) matrix of runs of count / features floats.
        let (rows, cols) = toChannelsLast ? (c, p) : (p, c)
        backend.timingLayout { ck_transpose_runs(src, out, rows, cols, count / features) }
    }
}

/// `batch` images between (C, P) and (P, C) order: oneDNN's jit reorder,
/// or a tiled transpose without oneDNN.
func permuteChannels(_ src: UnsafePointer<Float>, batch b: Int, channels c: Int, pixels p: Int, toChannelsLast: Bool,
                     into out: UnsafeMutablePointer<Float>, on backend: Backend) {
    backend.timingLayout {
        if let dnnl = backend.dnnl {
            dnnl.permute(src, dimensions: [b, c, p, 1], toChannelsLast: toChannelsLast, into: out)
        } else {
            ck_transpose_batch(src, out, b, toChannelsLast ? c : p, toChannelsLast ? p : c)
        }
    }
}

/// Moves the channel axis; with one channel or one pixel the order of the
/// elements does not change, so only the shape does.
func permuted(_ x: Tensor, toChannelsLast: Bool, on backend: Backend) -> Tensor {
    let s = x.shape
    let (b, c, h, w) = toChannelsLast ? (s[0], s[1], s[2], s[3]) : (s[0], s[3], s[1], s[2])
    let shape = toChannelsLast ? [b, h, w, c] : [b, c, h, w]
    if c == 1 || h * w == 1 || x.count == 0 { return Tensor(shape: shape, scalars: x.scalars) }
    return Tensor(shape: shape) { out in
        x.scalars.withUnsafeBufferPointer {
            permuteChannels($0.baseAddress!, batch: b, channels: c, pixels: h * w, toChannelsLast: toChannelsLast,
                            into: out.baseAddress!, on: backend)
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
        ConvolutionOps.backward(ConvolutionOps.reluGradient(dy, f, on: backend), f, weight: weight, bias: bias,
                                inputGradient: true, on: backend)
    })
}

@derivative(of: conv2dReLU, wrt: (weight, bias))
@usableFromInline
func _vjpConv2dReLUParameters(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let f = ConvolutionOps.forward(x, weight: weight, bias: bias, stride: stride, padding: padding, relu: true, on: backend)
    return (f.y, { dy in
        let (_, dw, db) = ConvolutionOps.backward(ConvolutionOps.reluGradient(dy, f, on: backend), f, weight: weight,
                                                  bias: bias, inputGradient: false, on: backend)
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
        TransposedConvolutionOps.backward(TransposedConvolutionOps.reluGradient(dy, f, on: backend), f, weight: weight,
                                          bias: bias, on: backend)
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

    /// A gradient as its backward pass prepared it: the bf16 rounding made
    /// already (`OutputGradient`), or the f32 values rounded here.
    init(_ g: OutputGradient, on backend: Backend) {
        values = g.values
        rounded = g.rounded ?? (backend.bf16 ? backend.roundedToBF16(g.values.scalars) : nil)
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

/// A convolution's (or a linear layer's) output gradient as its backward
/// pass reads it. Behind a fused ReLU, one pass over memory
/// (`ck_relu_backward_sums`) masks it, rounds it to bf16 where the kernels
/// read bf16 (`rounds`) and sums its columns (the bias
/// gradient, in `ck_column_sums`' order, so with its bits); the f32 values
/// are then written only when the path reads them (f32, im2col of dy,
/// OpenBLAS). Before, these were three passes: the mask, the rounding and
/// the sums.
struct OutputGradient {
    /// dy (B, Ho, Wo, O) in f32, or a symbolic zero when only `rounded` is needed.
    let values: Tensor
    let rounded: [UInt16]?
    /// Σ over positions of dy, per channel (O).
    let biasSums: [Float]?

    /// dy as it is: the paths round it and sum it themselves.
    init(_ dy: Tensor) {
        (values, rounded, biasSums) = (dy, nil, nil)
    }

    /// relu′(y) · dy for y (…, channels), in one pass; rounded to bf16 when `rounds`.
    init(relu dy: Tensor, output y: Tensor, channels: Int, readsValues: Bool, rounds bf16: Bool) {
        precondition(dy.shape == y.shape, "OutputGradient: dy \(dy.shape), y \(y.shape)")
        let n = y.count, rows = n / max(channels, 1)
        let writesValues = readsValues || !bf16
        var out = [Float](unsafeUninitializedCapacity: writesValues ? n : 0) { _, count in count = writesValues ? n : 0 }
        var out16 = [UInt16](unsafeUninitializedCapacity: bf16 ? n : 0) { _, count in count = bf16 ? n : 0 }
        var sums = [Float](repeating: 0, count: channels)
        dy.scalars.withUnsafeBufferPointer { g in
            y.scalars.withUnsafeBufferPointer { v in
                out.withUnsafeMutableBufferPointer { o in
                    out16.withUnsafeMutableBufferPointer { o16 in
                        ck_relu_backward_sums(g.baseAddress, v.baseAddress, writesValues ? o.baseAddress : nil,
                                              bf16 ? o16.baseAddress : nil, rows, channels, &sums)
                    }
                }
            }
        }
        values = writesValues ? Tensor(shape: y.shape, scalars: out) : .zero
        rounded = bf16 ? out16 : nil
        biasSums = sums
    }

    /// db: the sums made with the mask, or Σ over the rows of dy now.
    func biasGradient(rows: Int, columns: Int, into db: UnsafeMutablePointer<Float>) {
        if let biasSums { db.update(from: biasSums, count: columns) } else { columnSums(values, rows: rows, columns: columns, into: db) }
    }
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

/// The geometry of one convolution (in its forward direction): input
/// (B, H, W, C), output (B, Ho, Wo, O), kernel kh×kw, stride, padding.
struct ConvolutionShape {
    let batch, height, width, channels: Int
    let outputHeight, outputWidth, outputChannels: Int
    let kernelHeight, kernelWidth, stride, padding: Int

    /// Columns of its im2col matrix: C·kh·kw.
    var columnLength: Int { channels * kernelHeight * kernelWidth }
    /// Output positions of the batch: B·Ho·Wo.
    var positions: Int { batch * outputHeight * outputWidth }
    var flops: Int { 2 * positions * outputChannels * columnLength }

    /// dW (O, C, kh, kw) = dyᵀ · cols for this convolution's input x and output
    /// gradient dy (B·Ho·Wo, O), as the operands the forward and backward-data
    /// kernels took (bf16 already rounded, or f32): one matrix product over the
    /// tap-major im2col matrix of x (copies of whole kernel rows, in x's own
    /// element type), then the (O, kh·kw, C) result permuted to PyTorch's order.
    /// In bf16, oneDNN 2.6's backward-weights kernels for the conv model's
    /// shapes reach about 60 % of its matmul's rate (docs/ARCHITECTURE.md, "Kernels"); this path cut the conv
    /// model's forward+backward from 8.41 to 7.71 ms at np 2 (in f32 it lost:
    /// 10.56 against 11.02, the gather costing more than the kernel saves).
    func weightGradientByGEMM(input x: ActivationOperand, gradient dy: ActivationOperand,
                              into dw: UnsafeMutablePointer<Float>, on backend: Backend) {
        let taps = kernelHeight * kernelWidth
        let k = columnLength
        func gather(_ cols: UnsafeMutableRawPointer, _ elementSize: Int) {
            backend.timingLayout {
                x.withPointer { px in
                    ck_im2col_nhwc_taps(px, elementSize, batch, height, width, channels, kernelHeight, kernelWidth,
                                        stride, padding, outputHeight, outputWidth, cols)
                }
            }
        }
        let columns: Backend.MatrixOperand
        if backend.bf16 {
            let cols = [UInt16](unsafeUninitializedCapacity: positions * k) { buffer, n in
                gather(UnsafeMutableRawPointer(buffer.baseAddress!), 2)
                n = positions * k
            }
            columns = Backend.MatrixOperand(rows: positions, columns: k, values: .zero, rounded: cols)
        } else {
            let cols = Tensor(shape: [positions, k]) { gather(UnsafeMutableRawPointer($0.baseAddress!), 4) }
            columns = Backend.MatrixOperand(rows: positions, columns: k, values: cols, rounded: nil)
        }
        let g = Backend.MatrixOperand(rows: positions, columns: outputChannels, values: dy.values, rounded: dy.rounded)
        var tapMajor = [Float](repeating: 0, count: outputChannels * k)
        tapMajor.withUnsafeMutableBufferPointer {
            backend.matmul(g, transposed: true, columns, transposed: false, into: $0.baseAddress!, ldc: k)
        }
        backend.timingLayout { ck_taps_to_channels_major(tapMajor, outputChannels, taps, channels, dw) }
    }

    /// cols (B·Ho·Wo, C·kh·kw) of x (B, H, W, C).
    func im2col(_ x: Tensor, on backend: Backend) -> Tensor {
        Tensor(shape: [positions, columnLength]) { cols in
            backend.timingLayout {
                x.scalars.withUnsafeBufferPointer {
                    ck_im2col_nhwc($0.baseAddress, batch, height, width, channels, kernelHeight, kernelWidth, stride,
                                   padding, outputHeight, outputWidth, cols.baseAddress)
                }
            }
        }
    }

    /// `im2col(x)` as a product's operand. In bf16 it is rounded as it is
    /// gathered, a block of rows at a time in L1 (`ck_im2col_nhwc_bf16`:
    /// the bits of rounding the f32 matrix, which is never written).
    func im2colOperand(_ x: Tensor, on backend: Backend) -> Backend.MatrixOperand {
        guard backend.bf16 else { return backend.operand(im2col(x, on: backend), rows: positions, columns: columnLength) }
        let count = positions * columnLength
        let cols = backend.timingLayout {
            [UInt16](unsafeUninitializedCapacity: count) { buffer, n in
                x.scalars.withUnsafeBufferPointer {
                    ck_im2col_nhwc_bf16($0.baseAddress, batch, height, width, channels, kernelHeight, kernelWidth,
                                        stride, padding, outputHeight, outputWidth, buffer.baseAddress)
                }
                n = count
            }
        }
        return Backend.MatrixOperand(rows: positions, columns: columnLength, values: .zero, rounded: cols)
    }

    /// dx (B, H, W, C) = the sum over windows of cols.
    func col2im(_ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, on backend: Backend) {
        backend.timingLayout {
            ck_col2im_nhwc(cols, batch, height, width, channels, kernelHeight, kernelWidth, stride, padding,
                           outputHeight, outputWidth, dx)
        }
    }

    /// The kernels of oneDNN reach a few GFLOP/s when the image has one or
    /// two channels (conv1 of an MNIST model: 25 GFLOP/s, the last transposed
    /// convolution's forward pass: 11); one GEMM over the im2col matrix is
    /// several times faster there (see the README's performance section).
    var prefersGEMM: Bool { channels <= 4 }
}

/// db = Σ over rows of a (rows, cols) gradient, into `targets`' bias.
func columnSums(_ dy: Tensor, rows: Int, columns: Int, into db: UnsafeMutablePointer<Float>) {
    dy.scalars.withUnsafeBufferPointer { ck_column_sums($0.baseAddress, rows, columns, db) }
}

@usableFromInline
enum ConvolutionOps {
    @usableFromInline
    struct Forward {
        let y: Tensor  // (B, Ho, Wo, O)
        let shape: ConvolutionShape
        let path: Path
        let input: Tensor  // (B, H, W, C)
    }

    /// How a convolution runs, with what its forward pass prepared for the backward one.
    enum Path {
        /// oneDNN's direct convolution: the input and weights as its kernels take them.
        case direct(DNNLConvolution, ActivationOperand, PreparedWeights)
        /// One GEMM over the im2col matrix: it and the weights (O, C·kh·kw) as operands.
        case gemm(columns: Backend.MatrixOperand, weight: Backend.MatrixOperand)
        /// OpenBLAS: NCHW im2col kernels between transposes.
        case openBLAS
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
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = outputSize(h, kernel: kh, stride: stride, padding: padding)
        let ow = outputSize(w, kernel: kw, stride: stride, padding: padding)
        precondition(oh >= 1 && ow >= 1, "conv2d: \(h)×\(w) input too small for a \(kh)×\(kw) kernel")
        let shape = ConvolutionShape(batch: b, height: h, width: w, channels: c, outputHeight: oh, outputWidth: ow,
                                     outputChannels: o, kernelHeight: kh, kernelWidth: kw, stride: stride, padding: padding)
        guard let dnnl = backend.dnnl, b > 0 else {
            let y = channelsLast(Im2colKernels.conv2dForward(channelsFirst(x, on: backend), weight: weight, bias: bias, stride: stride,
                                                             padding: padding, relu: relu, on: backend), on: backend)
            return Forward(y: y, shape: shape, path: .openBLAS, input: x)
        }
        if shape.prefersGEMM {
            let columns = shape.im2colOperand(x, on: backend)
            let w = backend.operand(weight, rows: o, columns: shape.columnLength)
            // y (B·Ho·Wo, O) = cols · Wᵀ + bias, ReLU in the epilogue
            let y = Tensor(shape: [b, oh, ow, o]) { y in
                bias.scalars.withUnsafeBufferPointer { pb in
                    backend.narrowMatmul(columns, transposed: false, w, transposed: true, into: y.baseAddress!, ldc: o,
                                   bias: pb.baseAddress!, relu: relu)
                }
            }
            return Forward(y: y, shape: shape, path: .gemm(columns: columns, weight: w), input: x)
        }
        let primitive = dnnl.convolution(convolutionKey(batch: b, channels: c, height: h, width: w, weight: weight,
                                                        stride: stride, padding: padding, outputHeight: oh,
                                                        outputWidth: ow, relu: relu, on: backend))
        let operand = ActivationOperand(x, on: backend)
        let weights = PreparedWeights(weight, for: primitive, on: backend)
        let y = Tensor(shape: [b, oh, ow, o]) { y in
            bias.scalars.withUnsafeBufferPointer { pb in
                backend.timingKernel(flops: shape.flops, "conv fwd \(x.shape)→\(o)") {
                    operand.withPointer { px in
                        weights.withForward { pw in
                            primitive.forward(source: px, weights: pw, bias: pb.baseAddress!, destination: y.baseAddress!)
                        }
                    }
                }
            }
        }
        return Forward(y: y, shape: shape, path: .direct(primitive, operand, weights), input: x)
    }

    /// (dx or .zero, dW, db) for dy (B, Ho, Wo, O) (already masked by a fused ReLU).
    @usableFromInline
    static func backward(_ dy: Tensor, _ f: Forward, weight: Tensor, bias: Tensor, inputGradient: Bool,
                         on backend: Backend) -> (Tensor, Tensor, Tensor) {
        if dy.isSymbolicZero { return (.zero, .zero, .zero) }
        return backward(OutputGradient(dy), f, weight: weight, bias: bias, inputGradient: inputGradient, on: backend)
    }

    /// The ReLU pullback of dy behind this forward pass, for `backward`.
    static func reluGradient(_ dy: Tensor, _ f: Forward, on backend: Backend) -> OutputGradient {
        if dy.isSymbolicZero { return OutputGradient(dy) }
        var readsValues = false
        if case .openBLAS = f.path { readsValues = true }
        return OutputGradient(relu: dy, output: f.y, channels: f.shape.outputChannels, readsValues: readsValues,
                              rounds: backend.bf16)
    }

    static func backward(_ output: OutputGradient, _ f: Forward, weight: Tensor, bias: Tensor, inputGradient: Bool,
                         on backend: Backend) -> (Tensor, Tensor, Tensor) {
        let dy = output.values
        if dy.isSymbolicZero && output.rounded == nil { return (.zero, .zero, .zero) }
        let shape = f.shape
        switch f.path {
        case .openBLAS:
            let (dx, dw, db) = Im2colKernels.conv2dBackward(channelsFirst(dy, on: backend), x: channelsFirst(f.input, on: backend),
                                                            weight: weight,
                                                            stride: shape.stride, padding: shape.padding,
                                                            inputGradient: inputGradient, on: backend)
            return (inputGradient ? channelsLast(dx, on: backend) : .zero, dw, db)

        case let .gemm(columns, w):
            let g = output.rounded.map {
                Backend.MatrixOperand(rows: shape.positions, columns: shape.outputChannels, values: dy, rounded: $0)
            } ?? backend.operand(dy, rows: shape.positions, columns: shape.outputChannels)
            var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
            targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                // dW (O, C·kh·kw) = dyᵀ · cols; db = Σ_positions dy
                backend.narrowMatmul(g, transposed: true, columns, transposed: false, into: dw, ldc: shape.columnLength)
                output.biasGradient(rows: shape.positions, columns: shape.outputChannels, into: db)
            }
            guard inputGradient else { return (.zero, targets.weight, targets.bias) }
            // dcols (B·Ho·Wo, C·kh·kw) = dy · W, then col2im
            let dcols = Tensor(shape: [shape.positions, shape.columnLength]) {
                backend.narrowMatmul(g, transposed: false, w, transposed: false, into: $0.baseAddress!, ldc: shape.columnLength)
            }
            let dx = Tensor(shape: f.input.shape) { dx in
                dcols.scalars.withUnsafeBufferPointer { shape.col2im($0.baseAddress!, into: dx.baseAddress!, on: backend) }
            }
            return (dx, targets.weight, targets.bias)

        case let .direct(primitive, operand, weights):
            let gradient = ActivationOperand(output, on: backend)
            var dx = Tensor.zero
            if inputGradient {
                dx = Tensor(shape: f.input.shape) { dx in
                    backend.timingKernel(flops: shape.flops, "conv bwd-data \(f.input.shape)") {
                        gradient.withPointer { pdy in
                            weights.withBackwardData { pw in
                                primitive.backwardData(diffDestination: pdy, weights: pw, diffSource: dx.baseAddress!)
                            }
                        }
                    }
                }
            }
            // bf16: the weight gradient by one GEMM (faster there; in f32 oneDNN's own kernel is).
            if backend.bf16 {
                var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
                targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                    shape.weightGradientByGEMM(input: operand, gradient: gradient, into: dw, on: backend)
                    output.biasGradient(rows: shape.positions, columns: shape.outputChannels, into: db)
                }
                return (dx, targets.weight, targets.bias)
            }
            var scratch = [UInt8](repeating: 0, count: primitive.diffWeightsBytes)
            var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
            targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                backend.timingKernel(flops: shape.flops, "conv bwd-weights \(f.input.shape)") {
                    operand.withPointer { px in
                        gradient.withPointer { pdy in
                            scratch.withUnsafeMutableBytes { s in
                                primitive.backwardWeights(source: px, diffDestination: pdy, diffWeights: dw,
                                                          diffBias: db, scratch: s.baseAddress!)
                            }
                        }
                    }
                }
            }
            return (dx, targets.weight, targets.bias)
        }
    }
}

@usableFromInline
enum TransposedConvolutionOps {
    @usableFromInline
    struct Forward {
        let y: Tensor  // (B, Ho, Wo, O)
        /// The convolution this is the adjoint of: (B, Ho, Wo, O) → (B, H, W, C).
        let adjoint: ConvolutionShape
        let path: Path
        let input: Tensor  // (B, H, W, C)
    }

    enum Path {
        /// oneDNN: the adjoint convolution's primitives, with the input and weights prepared.
        case direct(DNNLConvolution, ActivationOperand, PreparedWeights)
        /// GEMMs with the adjoint's im2col/col2im: x (B·H·W, C) and W (C, O·kh·kw) as operands.
        case gemm(input: Backend.MatrixOperand, weight: Backend.MatrixOperand)
        case openBLAS
        /// A head with no output channels.
        case empty
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
        let (o, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
        let oh = (h - 1) * stride - 2 * padding + kh + outputPadding
        let ow = (w - 1) * stride - 2 * padding + kw + outputPadding
        precondition(oh >= 1 && ow >= 1, "convTranspose2d: empty output for a \(h)×\(w) input")
        // The adjoint convolution maps the output shape back to the input shape.
        let adjoint = ConvolutionShape(batch: b, height: oh, width: ow, channels: o, outputHeight: h, outputWidth: w,
                                       outputChannels: c, kernelHeight: kh, kernelWidth: kw, stride: stride,
                                       padding: padding)
        if o == 0 {  // an unused head
            return Forward(y: Tensor(zeros: [b, oh, ow, 0]), adjoint: adjoint, path: .empty, input: x)
        }
        guard let dnnl = backend.dnnl, b > 0 else {
            let y = channelsLast(Im2colKernels.convTransposeForward(channelsFirst(x, on: backend), weight: weight, bias: bias,
                                                                    stride: stride, padding: padding,
                                                                    outputPadding: outputPadding, relu: relu, on: backend),
                                 on: backend)
            return Forward(y: y, adjoint: adjoint, path: .openBLAS, input: x)
        }
        func addBias(_ y: UnsafeMutablePointer<Float>) {
            bias.scalars.withUnsafeBufferPointer { ck_add_bias(y, $0.baseAddress, b * oh * ow, o, relu ? 1 : 0) }
        }
        if adjoint.prefersGEMM {
            let input = backend.operand(x, rows: b * h * w, columns: c)
            let wt = backend.operand(weight, rows: c, columns: adjoint.columnLength)
            // dcols (B·H·W, O·kh·kw) = x · W, then the adjoint's col2im, then bias (and ReLU)
            let dcols = Tensor(shape: [b * h * w, adjoint.columnLength]) {
                backend.narrowMatmul(input, transposed: false, wt, transposed: false, into: $0.baseAddress!,
                               ldc: adjoint.columnLength)
            }
            let y = Tensor(shape: [b, oh, ow, o]) { y in
                dcols.scalars.withUnsafeBufferPointer { adjoint.col2im($0.baseAddress!, into: y.baseAddress!, on: backend) }
                addBias(y.baseAddress!)
            }
            return Forward(y: y, adjoint: adjoint, path: .gemm(input: input, weight: wt), input: x)
        }
        let primitive = dnnl.convolution(convolutionKey(batch: b, channels: o, height: oh, width: ow, weight: weight,
                                                        stride: stride, padding: padding, outputHeight: h,
                                                        outputWidth: w, relu: false, on: backend))
        let operand = ActivationOperand(x, on: backend)
        let weights = PreparedWeights(weight, for: primitive, on: backend)
        let y = Tensor(shape: [b, oh, ow, o]) { y in
            backend.timingKernel(flops: adjoint.flops, "convT fwd \(x.shape)→\(o)") {
                operand.withPointer { px in
                    weights.withBackwardData { pw in
                        primitive.backwardData(diffDestination: px, weights: pw, diffSource: y.baseAddress!)
                    }
                }
            }
            addBias(y.baseAddress!)
        }
        return Forward(y: y, adjoint: adjoint, path: .direct(primitive, operand, weights), input: x)
    }

    /// (dx, dW, db) for dy (B, Ho, Wo, O).
    @usableFromInline
    static func backward(_ dy: Tensor, _ f: Forward, weight: Tensor, bias: Tensor, on backend: Backend)
        -> (Tensor, Tensor, Tensor)
    {
        if dy.isSymbolicZero { return (.zero, .zero, .zero) }
        return backward(OutputGradient(dy), f, weight: weight, bias: bias, on: backend)
    }

    /// The ReLU pullback of dy behind this forward pass, for `backward`.
    static func reluGradient(_ dy: Tensor, _ f: Forward, on backend: Backend) -> OutputGradient {
        if dy.isSymbolicZero { return OutputGradient(dy) }
        var readsValues = false
        switch f.path {
        case .openBLAS, .gemm: readsValues = true  // OpenBLAS, and the im2col of dy, read f32
        case .empty, .direct: break
        }
        return OutputGradient(relu: dy, output: f.y, channels: f.adjoint.channels, readsValues: readsValues,
                              rounds: backend.bf16)
    }

    /// (dx, dW, db) for the output gradient (masked by a fused ReLU, or as it came).
    static func backward(_ output: OutputGradient, _ f: Forward, weight: Tensor, bias: Tensor, on backend: Backend)
        -> (Tensor, Tensor, Tensor)
    {
        let dy = output.values
        if dy.isSymbolicZero && output.rounded == nil { return (.zero, .zero, .zero) }
        let adjoint = f.adjoint
        // The output's pixels (B·Ho·Wo): the rows of dy, summed for the bias gradient.
        let pixels = f.y.count / max(adjoint.channels, 1)
        switch f.path {
        case .empty:
            return (.zero, .zero, .zero)

        case .openBLAS:
            let y = channelsFirst(dy, on: backend)
            let (dx, dw, db) = Im2colKernels.convTransposeBackward(y, x: channelsFirst(f.input, on: backend), weight: weight,
                                                                   outputShape: y.shape, stride: adjoint.stride,
                                                                   padding: adjoint.padding, on: backend)
            return (channelsLast(dx, on: backend), dw, db)

        case let .gemm(input, wt):
            // cols (B·H·W, O·kh·kw) of dy in the adjoint's geometry
            let columns = adjoint.im2colOperand(dy, on: backend)
            // dx (B·H·W, C) = cols · Wᵀ
            let dx = Tensor(shape: f.input.shape) {
                backend.narrowMatmul(columns, transposed: false, wt, transposed: true, into: $0.baseAddress!,
                               ldc: adjoint.outputChannels)
            }
            var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
            targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                // dW (C, O·kh·kw) = xᵀ · cols; db = Σ over output pixels of dy
                backend.narrowMatmul(input, transposed: true, columns, transposed: false, into: dw, ldc: adjoint.columnLength)
                output.biasGradient(rows: pixels, columns: adjoint.channels, into: db)
            }
            return (dx, targets.weight, targets.bias)

        case let .direct(primitive, operand, weights):
            let gradient = ActivationOperand(output, on: backend)
            // dx = the adjoint convolution of dy; its bias is zero here.
            let zeroBias = [Float](repeating: 0, count: adjoint.outputChannels)
            let dx = Tensor(shape: f.input.shape) { dx in
                backend.timingKernel(flops: adjoint.flops, "convT bwd-data \(f.input.shape)") {
                    gradient.withPointer { pdy in
                        weights.withForward { pw in
                            zeroBias.withUnsafeBufferPointer {
                                primitive.forward(source: pdy, weights: pw, bias: $0.baseAddress!, destination: dx.baseAddress!)
                            }
                        }
                    }
                }
            }
            // bf16: the weight gradient by one GEMM, as for the convolutions.
            if backend.bf16 {
                var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
                targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                    // The adjoint convolution's weight gradient, its input dy and its output gradient x.
                    adjoint.weightGradientByGEMM(input: gradient, gradient: operand, into: dw, on: backend)
                    output.biasGradient(rows: pixels, columns: adjoint.channels, into: db)
                }
                return (dx, targets.weight, targets.bias)
            }
            var scratch = [UInt8](repeating: 0, count: primitive.diffWeightsBytes)
            var adjointBias = [Float](repeating: 0, count: adjoint.outputChannels)
            var targets = ParameterGradientTargets(weight: weight, bias: bias, on: backend)
            targets.fill(weightCount: weight.count, biasCount: bias.count) { dw, db in
                backend.timingKernel(flops: adjoint.flops, "convT bwd-weights \(f.input.shape)") {
                    gradient.withPointer { pdy in
                        operand.withPointer { px in
                            scratch.withUnsafeMutableBytes { s in
                                adjointBias.withUnsafeMutableBufferPointer { ab in
                                    primitive.backwardWeights(source: pdy, diffDestination: px, diffWeights: dw,
                                                              diffBias: ab.baseAddress!, scratch: s.baseAddress!)
                                }
                            }
                        }
                    }
                }
                output.biasGradient(rows: pixels, columns: adjoint.channels, into: db)
            }
            return (dx, targets.weight, targets.bias)
        }
    }
}
