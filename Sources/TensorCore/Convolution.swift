import _Differentiation

// 2-D convolutions (NCHW), by im2col + one sgemm per op, each forward op
// followed by its VJPs. Layouts follow PyTorch: Conv2d weight (O, C, kh, kw);
// ConvTranspose2d weight (C, O, kh, kw), where C is the input channels.
// Legend: B batch, C input channels, O output channels, H×W input size,
// Ho×Wo output size, K = C·kh·kw (conv) or O·kh·kw (transposed), P = Ho·Wo.
//
// Layout of the GEMMs: the im2col matrix is (K, B·P), one row per kernel tap
// and one column per output position of every image, so that im2col and
// col2im run along contiguous rows, and a convolution is one GEMM
// W (O, K) · cols (K, B·P) = Z (O, B·P); Z's planes (O, B, P) become NCHW's
// (B, O, P) by copying whole P-long rows.

/// The index arithmetic of one convolution, from an input of C×H×W to an
/// output of Ho×Wo. `im2col` gathers, for every output position, the
/// kh·kw·C input values its kernel sees (zero outside the image);
/// `col2im` scatters such columns back, adding where windows overlap.
/// A transposed convolution is this geometry read backwards.
public struct ConvGeometry: Equatable, Sendable {
    public let channels, height, width: Int
    public let kernelHeight, kernelWidth: Int
    public let stride, padding: Int
    public let outputHeight, outputWidth: Int

    /// For a convolution with this input size; the output size follows.
    public init(channels: Int, height: Int, width: Int, kernelHeight: Int, kernelWidth: Int,
                stride: Int, padding: Int) {
        precondition(stride >= 1 && padding >= 0 && kernelHeight >= 1 && kernelWidth >= 1)
        self.channels = channels
        self.height = height
        self.width = width
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.stride = stride
        self.padding = padding
        outputHeight = (height + 2 * padding - kernelHeight) / stride + 1
        outputWidth = (width + 2 * padding - kernelWidth) / stride + 1
        precondition(outputHeight >= 1 && outputWidth >= 1,
                     "convolution: \(height)×\(width) input too small for a \(kernelHeight)×\(kernelWidth) kernel")
    }

    /// Columns per output position (the GEMM's inner dimension): C·kh·kw.
    public var columnLength: Int { channels * kernelHeight * kernelWidth }
    public var outputPositions: Int { outputHeight * outputWidth }
    public var inputSize: Int { channels * height * width }

    /// Width and height of an input plane with its zero border.
    var paddedWidth: Int { width + 2 * padding }
    var paddedHeight: Int { height + 2 * padding }

    /// For output position q = (oy, ox), the offset of its window's top-left
    /// corner in a padded plane: oy·stride·Wp + ox·stride.
    func windowOffsets() -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(outputPositions)
        for oy in 0..<outputHeight {
            for ox in 0..<outputWidth { out.append(Int32(oy * stride * paddedWidth + ox * stride)) }
        }
        return out
    }

    /// cols (K, B·P) from x (B, C, H, W); row (c, i, j) matches the weight
    /// layout (O, C, kh, kw) flattened to (O, K). Each input plane is copied
    /// into a zero-bordered scratch plane once, then every kernel tap is a
    /// branch-free gather through the window offsets.
    func im2col(_ x: UnsafePointer<Float>, batch: Int, into cols: UnsafeMutablePointer<Float>) {
        KernelTimer.timingIm2col { gather(x, batch: batch, into: cols) }
    }

    private func gather(_ x: UnsafePointer<Float>, batch: Int, into cols: UnsafeMutablePointer<Float>) {
        let (p, wp) = (outputPositions, paddedWidth)
        let rowLength = batch * p
        let offsets = windowOffsets()
        var scratch = [Float](repeating: 0, count: paddedHeight * wp)
        scratch.withUnsafeMutableBufferPointer { padded in
            offsets.withUnsafeBufferPointer { window in
                for b in 0..<batch {
                    for c in 0..<channels {
                        let plane = x + (b * channels + c) * height * width
                        for y in 0..<height {
                            (padded.baseAddress! + (y + padding) * wp + padding).update(from: plane + y * width, count: width)
                        }
                        for i in 0..<kernelHeight {
                            for j in 0..<kernelWidth {
                                let row = cols + ((c * kernelHeight + i) * kernelWidth + j) * rowLength + b * p
                                let tap = padded.baseAddress! + i * wp + j
                                for q in 0..<p { row[q] = tap[Int(window[q])] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx (B, C, H, W) = Σ over windows of cols (K, B·P); the adjoint of im2col.
    func col2im(_ cols: UnsafePointer<Float>, batch: Int, into x: UnsafeMutablePointer<Float>) {
        KernelTimer.timingIm2col { scatter(cols, batch: batch, into: x) }
    }

    private func scatter(_ cols: UnsafePointer<Float>, batch: Int, into x: UnsafeMutablePointer<Float>) {
        let (p, wp) = (outputPositions, paddedWidth)
        let rowLength = batch * p
        let offsets = windowOffsets()
        var scratch = [Float](repeating: 0, count: paddedHeight * wp)
        scratch.withUnsafeMutableBufferPointer { padded in
            offsets.withUnsafeBufferPointer { window in
                for b in 0..<batch {
                    for c in 0..<channels {
                        padded.initialize(repeating: 0)
                        for i in 0..<kernelHeight {
                            for j in 0..<kernelWidth {
                                let row = cols + ((c * kernelHeight + i) * kernelWidth + j) * rowLength + b * p
                                let tap = padded.baseAddress! + i * wp + j
                                // Within one tap the windows never share an input pixel.
                                for q in 0..<p { tap[Int(window[q])] += row[q] }
                            }
                        }
                        let plane = x + (b * channels + c) * height * width
                        for y in 0..<height {
                            (plane + y * width).update(from: padded.baseAddress! + (y + padding) * wp + padding, count: width)
                        }
                    }
                }
            }
        }
    }
}

/// (O, B, P) ↔ (B, O, P): moves P-long rows between channel-major GEMM
/// output and NCHW, adding a per-channel bias on the way out if given.
@usableFromInline
func channelMajorToNCHW(_ src: UnsafePointer<Float>, batch: Int, channels o: Int, positions p: Int,
                        bias: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>) {
    for c in 0..<o {
        let add = bias?[c] ?? 0
        for b in 0..<batch {
            let s = src + (c * batch + b) * p, d = dst + (b * o + c) * p
            if add == 0 { d.update(from: s, count: p) } else { for q in 0..<p { d[q] = s[q] + add } }
        }
    }
}

@usableFromInline
func nchwToChannelMajor(_ src: UnsafePointer<Float>, batch: Int, channels o: Int, positions p: Int,
                        into dst: UnsafeMutablePointer<Float>) {
    for c in 0..<o {
        for b in 0..<batch {
            (dst + (c * batch + b) * p).update(from: src + (b * o + c) * p, count: p)
        }
    }
}

/// Σ over b and positions of dy (B, O, P): the bias gradient (O).
@usableFromInline
func channelSums(_ dy: Tensor, batch: Int, channels o: Int, positions p: Int) -> Tensor {
    Tensor(shape: [o]) { db in
        dy.scalars.withUnsafeBufferPointer { g in
            for c in 0..<o {
                var s: Float = 0
                for b in 0..<batch { s += vectorSum(g.baseAddress! + (b * o + c) * p, count: p) }
                db[c] = s
            }
        }
    }
}

// MARK: - conv2d

/// Cross-correlation as PyTorch's `F.conv2d`: x (B, C, H, W), weight
/// (O, C, kh, kw), bias (O) → (B, O, Ho, Wo).
@differentiable(reverse)
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int) -> Tensor {
    ConvKernels.conv2dForward(x, weight: weight, bias: bias, stride: stride, padding: padding).y
}

@derivative(of: conv2d)
@usableFromInline
func _vjpConv2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let (y, cols, g) = ConvKernels.conv2dForward(x, weight: weight, bias: bias, stride: stride, padding: padding)
    return (y, { dy in
        let (dw, db, dRows) = ConvKernels.conv2dParameterGradients(dy, cols: cols, weight: weight, geometry: g)
        return (ConvKernels.conv2dInputGradient(dRows, weight: weight, geometry: g, batch: x.shape[0]), dw, db)
    })
}

/// The derivative when x is data (the first layer): no input gradient.
@derivative(of: conv2d, wrt: (weight, bias))
@usableFromInline
func _vjpConv2dParameters(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let (y, cols, g) = ConvKernels.conv2dForward(x, weight: weight, bias: bias, stride: stride, padding: padding)
    return (y, { dy in
        let (dw, db, _) = ConvKernels.conv2dParameterGradients(dy, cols: cols, weight: weight, geometry: g)
        return (dw, db)
    })
}

// MARK: - convTranspose2d

/// PyTorch's `F.conv_transpose2d`: x (B, C, H, W), weight (C, O, kh, kw),
/// bias (O) → (B, O, Ho, Wo) with Ho = (H−1)·stride − 2·padding + kh + outputPadding.
/// It is the input gradient of the convolution that maps (O, Ho, Wo) to (C, H, W).
@differentiable(reverse)
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                            outputPadding: Int) -> Tensor {
    ConvKernels.convTransposeForward(x, weight: weight, bias: bias, stride: stride, padding: padding,
                                     outputPadding: outputPadding).y
}

@derivative(of: convTranspose2d)
@usableFromInline
func _vjpConvTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int, outputPadding: Int)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let (y, rows, g) = ConvKernels.convTransposeForward(x, weight: weight, bias: bias, stride: stride,
                                                        padding: padding, outputPadding: outputPadding)
    return (y, { dy in ConvKernels.convTransposeBackward(dy, inputRows: rows, x: x, weight: weight, geometry: g) })
}

@usableFromInline
enum ConvKernels {
    static func geometry(input x: Tensor, kernel w: Tensor, stride: Int, padding: Int) -> ConvGeometry {
        ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                     kernelHeight: w.shape[2], kernelWidth: w.shape[3], stride: stride, padding: padding)
    }

    static func uninitialized(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { _, n in n = count }
    }

    /// y, the im2col matrix (kept for the weight gradient), the geometry.
    @usableFromInline
    static func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int)
        -> (y: Tensor, cols: [Float], geometry: ConvGeometry)
    {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1],
                     "conv2d: input \(x.shape) does not match weight \(weight.shape) (O, C, kh, kw)")
        precondition(bias.shape == [weight.shape[0]], "conv2d: bias \(bias.shape) for weight \(weight.shape)")
        let g = geometry(input: x, kernel: weight, stride: stride, padding: padding)
        let (b, o, k, p) = (x.shape[0], weight.shape[0], g.columnLength, g.outputPositions)
        var cols = uninitialized(k * b * p)
        var z = uninitialized(o * b * p)
        cols.withUnsafeMutableBufferPointer { c in
            x.scalars.withUnsafeBufferPointer { g.im2col($0.baseAddress!, batch: b, into: c.baseAddress!) }
            z.withUnsafeMutableBufferPointer { zz in
                weight.scalars.withUnsafeBufferPointer { w in
                    // Z (O, B·P) = W (O, K) · cols (K, B·P)
                    BLAS.gemm(transposeA: false, transposeB: false, m: o, n: b * p, k: k,
                              w.baseAddress!, lda: k, c.baseAddress!, ldb: b * p, beta: 0, zz.baseAddress!, ldc: b * p)
                }
            }
        }
        let y = Tensor(shape: [b, o, g.outputHeight, g.outputWidth]) { out in
            z.withUnsafeBufferPointer { zz in
                bias.scalars.withUnsafeBufferPointer { bb in
                    channelMajorToNCHW(zz.baseAddress!, batch: b, channels: o, positions: p,
                                       bias: bb.baseAddress!, into: out.baseAddress!)
                }
            }
        }
        return (y, cols, g)
    }

    /// (dW, db, dy channel-major (O, B·P)).
    @usableFromInline
    static func conv2dParameterGradients(_ dy: Tensor, cols: [Float], weight: Tensor, geometry g: ConvGeometry)
        -> (Tensor, Tensor, [Float])
    {
        if dy.isSymbolicZero { return (.zero, .zero, []) }
        let (b, o, k, p) = (dy.shape[0], weight.shape[0], g.columnLength, g.outputPositions)
        var dz = uninitialized(o * b * p)
        dz.withUnsafeMutableBufferPointer { d in
            dy.scalars.withUnsafeBufferPointer {
                nchwToChannelMajor($0.baseAddress!, batch: b, channels: o, positions: p, into: d.baseAddress!)
            }
        }
        let dw = Tensor(shape: weight.shape) { dw in
            dz.withUnsafeBufferPointer { d in
                cols.withUnsafeBufferPointer { c in
                    // dW (O, K) = dZ (O, B·P) · colsᵀ (B·P, K)
                    BLAS.gemm(transposeA: false, transposeB: true, m: o, n: k, k: b * p,
                              d.baseAddress!, lda: b * p, c.baseAddress!, ldb: b * p, beta: 0, dw.baseAddress!, ldc: k)
                }
            }
        }
        let db = Tensor(shape: [o]) { db in
            dz.withUnsafeBufferPointer { d in
                for c in 0..<o { db[c] = vectorSum(d.baseAddress! + c * b * p, count: b * p) }
            }
        }
        return (dw, db, dz)
    }

    /// dx = col2im(Wᵀ (K, O) · dZ (O, B·P)).
    @usableFromInline
    static func conv2dInputGradient(_ dz: [Float], weight: Tensor, geometry g: ConvGeometry, batch b: Int) -> Tensor {
        if dz.isEmpty && b > 0 { return .zero }
        let (o, k, p) = (weight.shape[0], g.columnLength, g.outputPositions)
        var dCols = uninitialized(k * b * p)
        dCols.withUnsafeMutableBufferPointer { c in
            dz.withUnsafeBufferPointer { d in
                weight.scalars.withUnsafeBufferPointer { w in
                    BLAS.gemm(transposeA: true, transposeB: false, m: k, n: b * p, k: o,
                              w.baseAddress!, lda: k, d.baseAddress!, ldb: b * p, beta: 0, c.baseAddress!, ldc: b * p)
                }
            }
        }
        return Tensor(shape: [b, g.channels, g.height, g.width]) { dx in
            dCols.withUnsafeBufferPointer { g.col2im($0.baseAddress!, batch: b, into: dx.baseAddress!) }
        }
    }

    /// y, x channel-major (C, B·H·W) (kept for the weight gradient), and the
    /// geometry of the adjoint convolution (from y's shape to x's).
    @usableFromInline
    static func convTransposeForward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                                     outputPadding: Int) -> (y: Tensor, rows: [Float], geometry: ConvGeometry)
    {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[0],
                     "convTranspose2d: input \(x.shape) does not match weight \(weight.shape) (C, O, kh, kw)")
        precondition(bias.shape == [weight.shape[1]], "convTranspose2d: bias \(bias.shape) for weight \(weight.shape)")
        precondition(outputPadding >= 0 && outputPadding < max(stride, 1), "output padding must be smaller than the stride")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[1]
        let (kh, kw) = (weight.shape[2], weight.shape[3])
        let outH = (h - 1) * stride - 2 * padding + kh + outputPadding
        let outW = (w - 1) * stride - 2 * padding + kw + outputPadding
        let g = ConvGeometry(channels: o, height: outH, width: outW, kernelHeight: kh, kernelWidth: kw,
                             stride: stride, padding: padding)
        precondition(g.outputHeight == h && g.outputWidth == w, "convTranspose2d: inconsistent geometry")
        if o == 0 { return (Tensor(zeros: [b, 0, outH, outW]), [], g) }  // an unused head
        let (k, p) = (g.columnLength, h * w)
        var xc = uninitialized(c * b * p)
        xc.withUnsafeMutableBufferPointer { r in
            x.scalars.withUnsafeBufferPointer {
                nchwToChannelMajor($0.baseAddress!, batch: b, channels: c, positions: p, into: r.baseAddress!)
            }
        }
        var cols = uninitialized(k * b * p)
        cols.withUnsafeMutableBufferPointer { cc in
            xc.withUnsafeBufferPointer { r in
                weight.scalars.withUnsafeBufferPointer { wt in
                    // cols (O·kh·kw, B·H·W) = Wᵀ (O·kh·kw, C) · X (C, B·H·W), W viewed (C, O·kh·kw)
                    BLAS.gemm(transposeA: true, transposeB: false, m: k, n: b * p, k: c,
                              wt.baseAddress!, lda: k, r.baseAddress!, ldb: b * p, beta: 0, cc.baseAddress!, ldc: b * p)
                }
            }
        }
        let y = Tensor(shape: [b, o, outH, outW]) { out in
            cols.withUnsafeBufferPointer { g.col2im($0.baseAddress!, batch: b, into: out.baseAddress!) }
            bias.scalars.withUnsafeBufferPointer { bb in
                let plane = outH * outW
                for n in 0..<b {
                    for ch in 0..<o {
                        let dst = out.baseAddress! + (n * o + ch) * plane
                        let add = bb[ch]
                        for q in 0..<plane { dst[q] += add }
                    }
                }
            }
        }
        return (y, xc, g)
    }

    @usableFromInline
    static func convTransposeBackward(_ dy: Tensor, inputRows xc: [Float], x: Tensor, weight: Tensor,
                                      geometry g: ConvGeometry) -> (Tensor, Tensor, Tensor)
    {
        if dy.isSymbolicZero || weight.shape[1] == 0 { return (.zero, .zero, .zero) }
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, k, p) = (weight.shape[1], g.columnLength, h * w)
        var dCols = uninitialized(k * b * p)
        dCols.withUnsafeMutableBufferPointer { cc in
            dy.scalars.withUnsafeBufferPointer { g.im2col($0.baseAddress!, batch: b, into: cc.baseAddress!) }
        }
        let dw = Tensor(shape: weight.shape) { dw in
            xc.withUnsafeBufferPointer { r in
                dCols.withUnsafeBufferPointer { cc in
                    // dW (C, O·kh·kw) = X (C, B·H·W) · dColsᵀ (B·H·W, O·kh·kw)
                    BLAS.gemm(transposeA: false, transposeB: true, m: c, n: k, k: b * p,
                              r.baseAddress!, lda: b * p, cc.baseAddress!, ldb: b * p, beta: 0, dw.baseAddress!, ldc: k)
                }
            }
        }
        let db = channelSums(dy, batch: b, channels: o, positions: g.inputSize / max(o, 1))
        var dxc = uninitialized(c * b * p)
        dxc.withUnsafeMutableBufferPointer { r in
            dCols.withUnsafeBufferPointer { cc in
                weight.scalars.withUnsafeBufferPointer { wt in
                    // dX (C, B·H·W) = W (C, O·kh·kw) · dCols (O·kh·kw, B·H·W)
                    BLAS.gemm(transposeA: false, transposeB: false, m: c, n: b * p, k: k,
                              wt.baseAddress!, lda: k, cc.baseAddress!, ldb: b * p, beta: 0, r.baseAddress!, ldc: b * p)
                }
            }
        }
        let dx = Tensor(shape: x.shape) { out in
            dxc.withUnsafeBufferPointer {
                channelMajorToNCHW($0.baseAddress!, batch: b, channels: c, positions: p, bias: nil, into: out.baseAddress!)
            }
        }
        return (dx, dw, db)
    }
}
