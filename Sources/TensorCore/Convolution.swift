import _Differentiation

// 2-D convolutions (NCHW), by im2col + one sgemm per op, each forward op
// followed by its VJPs. Layouts follow PyTorch: Conv2d weight (O, C, kh, kw);
// ConvTranspose2d weight (C, O, kh, kw), where C is the input channels.
// Legend: B batch, C input channels, O output channels, H×W input size,
// Ho×Wo output size, K = C·kh·kw (conv) or O·kh·kw (transposed), P = Ho·Wo.

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

    /// cols (B·P, K) from x (B, C, H, W); column order (c, i, j) matches the
    /// weight layout (O, C, kh, kw) flattened to (O, K).
    func im2col(_ x: UnsafePointer<Float>, batch: Int, into cols: UnsafeMutablePointer<Float>) {
        let (k, p) = (columnLength, outputPositions)
        for b in 0..<batch {
            let image = x + b * inputSize
            for oy in 0..<outputHeight {
                for ox in 0..<outputWidth {
                    let row = cols + ((b * p) + oy * outputWidth + ox) * k
                    var index = 0
                    for c in 0..<channels {
                        let plane = image + c * height * width
                        for i in 0..<kernelHeight {
                            let y = oy * stride - padding + i
                            let inside = y >= 0 && y < height
                            for j in 0..<kernelWidth {
                                let xx = ox * stride - padding + j
                                row[index] = inside && xx >= 0 && xx < width ? plane[y * width + xx] : 0
                                index += 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// dx (B, C, H, W) = Σ over windows of cols (B·P, K); the adjoint of im2col.
    func col2im(_ cols: UnsafePointer<Float>, batch: Int, into x: UnsafeMutablePointer<Float>) {
        let (k, p) = (columnLength, outputPositions)
        x.initialize(repeating: 0, count: batch * inputSize)
        for b in 0..<batch {
            let image = x + b * inputSize
            for oy in 0..<outputHeight {
                for ox in 0..<outputWidth {
                    let row = cols + ((b * p) + oy * outputWidth + ox) * k
                    var index = 0
                    for c in 0..<channels {
                        let plane = image + c * height * width
                        for i in 0..<kernelHeight {
                            let y = oy * stride - padding + i
                            guard y >= 0 && y < height else { index += kernelWidth; continue }
                            for j in 0..<kernelWidth {
                                let xx = ox * stride - padding + j
                                if xx >= 0 && xx < width { plane[y * width + xx] += row[index] }
                                index += 1
                            }
                        }
                    }
                }
            }
        }
    }
}

/// (B, P, O) rows ↔ (B, O, P) planes: the GEMMs produce one row per output
/// position, NCHW wants one plane per channel.
@usableFromInline
func transposeRowsToPlanes(_ src: UnsafePointer<Float>, batch: Int, positions p: Int, channels o: Int,
                           bias: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>) {
    for b in 0..<batch {
        let s = src + b * p * o, d = dst + b * p * o
        for c in 0..<o {
            let add = bias?[c] ?? 0
            for q in 0..<p { d[c * p + q] = s[q * o + c] + add }
        }
    }
}

@usableFromInline
func transposePlanesToRows(_ src: UnsafePointer<Float>, batch: Int, positions p: Int, channels o: Int,
                           into dst: UnsafeMutablePointer<Float>) {
    for b in 0..<batch {
        let s = src + b * p * o, d = dst + b * p * o
        for c in 0..<o {
            for q in 0..<p { d[q * o + c] = s[c * p + q] }
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
        var cols = [Float](unsafeUninitializedCapacity: b * p * k) { _, n in n = b * p * k }
        var rows = [Float](unsafeUninitializedCapacity: b * p * o) { _, n in n = b * p * o }
        cols.withUnsafeMutableBufferPointer { c in
            x.scalars.withUnsafeBufferPointer { g.im2col($0.baseAddress!, batch: b, into: c.baseAddress!) }
            rows.withUnsafeMutableBufferPointer { r in
                weight.scalars.withUnsafeBufferPointer { w in
                    // rows (B·P, O) = cols (B·P, K) · Wᵀ (K, O)
                    BLAS.gemm(transposeA: false, transposeB: true, m: b * p, n: o, k: k,
                              c.baseAddress!, lda: k, w.baseAddress!, ldb: k, beta: 0, r.baseAddress!, ldc: o)
                }
            }
        }
        let y = Tensor(shape: [b, o, g.outputHeight, g.outputWidth]) { out in
            rows.withUnsafeBufferPointer { r in
                bias.scalars.withUnsafeBufferPointer { bb in
                    transposeRowsToPlanes(r.baseAddress!, batch: b, positions: p, channels: o,
                                          bias: bb.baseAddress!, into: out.baseAddress!)
                }
            }
        }
        return (y, cols, g)
    }

    /// (dW, db, dy as rows (B·P, O)).
    @usableFromInline
    static func conv2dParameterGradients(_ dy: Tensor, cols: [Float], weight: Tensor, geometry g: ConvGeometry)
        -> (Tensor, Tensor, [Float])
    {
        let (o, k, p) = (weight.shape[0], g.columnLength, g.outputPositions)
        let b = dy.isSymbolicZero ? 0 : dy.shape[0]
        if dy.isSymbolicZero { return (.zero, .zero, []) }
        var dRows = [Float](unsafeUninitializedCapacity: b * p * o) { _, n in n = b * p * o }
        dRows.withUnsafeMutableBufferPointer { r in
            dy.scalars.withUnsafeBufferPointer {
                transposePlanesToRows($0.baseAddress!, batch: b, positions: p, channels: o, into: r.baseAddress!)
            }
        }
        let dw = Tensor(shape: weight.shape) { dw in
            dRows.withUnsafeBufferPointer { r in
                cols.withUnsafeBufferPointer { c in
                    // dW (O, K) = rowsᵀ (O, B·P) · cols (B·P, K)
                    BLAS.gemm(transposeA: true, transposeB: false, m: o, n: k, k: b * p,
                              r.baseAddress!, lda: o, c.baseAddress!, ldb: k, beta: 0, dw.baseAddress!, ldc: k)
                }
            }
        }
        return (dw, channelSums(dy, batch: b, channels: o, positions: p), dRows)
    }

    /// dx = col2im(rows (B·P, O) · W (O, K)).
    @usableFromInline
    static func conv2dInputGradient(_ dRows: [Float], weight: Tensor, geometry g: ConvGeometry, batch b: Int) -> Tensor {
        if dRows.isEmpty && b > 0 { return .zero }
        let (o, k, p) = (weight.shape[0], g.columnLength, g.outputPositions)
        var dCols = [Float](unsafeUninitializedCapacity: b * p * k) { _, n in n = b * p * k }
        dCols.withUnsafeMutableBufferPointer { c in
            dRows.withUnsafeBufferPointer { r in
                weight.scalars.withUnsafeBufferPointer { w in
                    BLAS.gemm(transposeA: false, transposeB: false, m: b * p, n: k, k: o,
                              r.baseAddress!, lda: o, w.baseAddress!, ldb: k, beta: 0, c.baseAddress!, ldc: k)
                }
            }
        }
        return Tensor(shape: [b, g.channels, g.height, g.width]) { dx in
            dCols.withUnsafeBufferPointer { g.col2im($0.baseAddress!, batch: b, into: dx.baseAddress!) }
        }
    }

    /// y, x as rows (B·H·W, C) (kept for the weight gradient), and the
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
        var rows = [Float](unsafeUninitializedCapacity: b * p * c) { _, n in n = b * p * c }
        rows.withUnsafeMutableBufferPointer { r in
            x.scalars.withUnsafeBufferPointer {
                transposePlanesToRows($0.baseAddress!, batch: b, positions: p, channels: c, into: r.baseAddress!)
            }
        }
        var cols = [Float](unsafeUninitializedCapacity: b * p * k) { _, n in n = b * p * k }
        cols.withUnsafeMutableBufferPointer { cc in
            rows.withUnsafeBufferPointer { r in
                weight.scalars.withUnsafeBufferPointer { wt in
                    // cols (B·H·W, O·kh·kw) = rows (B·H·W, C) · W (C, O·kh·kw)
                    BLAS.gemm(transposeA: false, transposeB: false, m: b * p, n: k, k: c,
                              r.baseAddress!, lda: c, wt.baseAddress!, ldb: k, beta: 0, cc.baseAddress!, ldc: k)
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
                        for q in 0..<plane { dst[q] += bb[ch] }
                    }
                }
            }
        }
        return (y, rows, g)
    }

    @usableFromInline
    static func convTransposeBackward(_ dy: Tensor, inputRows rows: [Float], x: Tensor, weight: Tensor,
                                      geometry g: ConvGeometry) -> (Tensor, Tensor, Tensor)
    {
        if dy.isSymbolicZero || weight.shape[1] == 0 { return (.zero, .zero, .zero) }
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, k, p) = (weight.shape[1], g.columnLength, h * w)
        var dCols = [Float](unsafeUninitializedCapacity: b * p * k) { _, n in n = b * p * k }
        dCols.withUnsafeMutableBufferPointer { cc in
            dy.scalars.withUnsafeBufferPointer { g.im2col($0.baseAddress!, batch: b, into: cc.baseAddress!) }
        }
        let dw = Tensor(shape: weight.shape) { dw in
            rows.withUnsafeBufferPointer { r in
                dCols.withUnsafeBufferPointer { cc in
                    // dW (C, O·kh·kw) = rowsᵀ (C, B·H·W) · dCols (B·H·W, O·kh·kw)
                    BLAS.gemm(transposeA: true, transposeB: false, m: c, n: k, k: b * p,
                              r.baseAddress!, lda: c, cc.baseAddress!, ldb: k, beta: 0, dw.baseAddress!, ldc: k)
                }
            }
        }
        let db = channelSums(dy, batch: b, channels: o, positions: g.inputSize / max(o, 1))
        var dRows = [Float](unsafeUninitializedCapacity: b * p * c) { _, n in n = b * p * c }
        dRows.withUnsafeMutableBufferPointer { r in
            dCols.withUnsafeBufferPointer { cc in
                weight.scalars.withUnsafeBufferPointer { wt in
                    // dx rows (B·H·W, C) = dCols (B·H·W, O·kh·kw) · Wᵀ
                    BLAS.gemm(transposeA: false, transposeB: true, m: b * p, n: c, k: k,
                              cc.baseAddress!, lda: k, wt.baseAddress!, ldb: k, beta: 0, r.baseAddress!, ldc: c)
                }
            }
        }
        let dx = Tensor(shape: x.shape) { out in
            dRows.withUnsafeBufferPointer {
                transposeRowsToPlanes($0.baseAddress!, batch: b, positions: p, channels: c, bias: nil,
                                      into: out.baseAddress!)
            }
        }
        return (dx, dw, db)
    }
}
