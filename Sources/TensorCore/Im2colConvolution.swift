import _Differentiation

// The OpenBLAS implementation of the convolutions (see Convolutions.swift for
// the ops): NCHW, by im2col + one sgemm per op. Layouts follow PyTorch:
// Conv2d weight (O, C, kh, kw); ConvTranspose2d weight (C, O, kh, kw), where
// C is the input channels.
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
    func im2col(_ x: UnsafePointer<Float>, batch: Int, into cols: UnsafeMutablePointer<Float>, on backend: Backend) {
        backend.timingLayout { gather(x, batch: batch, into: cols) }
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
    func col2im(_ cols: UnsafePointer<Float>, batch: Int, into x: UnsafeMutablePointer<Float>, on backend: Backend) {
        backend.timingLayout { scatter(cols, batch: batch, into: x) }
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
                        bias: UnsafePointer<Float>?, relu: Bool = false, into dst: UnsafeMutablePointer<Float>) {
    for c in 0..<o {
        let add = bias?[c] ?? 0
        for b in 0..<batch {
            let s = src + (c * batch + b) * p, d = dst + (b * o + c) * p
            if relu {
                for q in 0..<p { d[q] = Swift.max(s[q] + add, 0) }
            } else if add == 0 {
                d.update(from: s, count: p)
            } else {
                for q in 0..<p { d[q] = s[q] + add }
            }
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

/// The same, keeping src only where `mask` (a ReLU's output, same layout)
/// is positive: the ReLU pullback fused into the copy.
@usableFromInline
func nchwToChannelMajor(_ src: UnsafePointer<Float>, maskedBy mask: UnsafePointer<Float>, batch: Int,
                        channels o: Int, positions p: Int, into dst: UnsafeMutablePointer<Float>) {
    for c in 0..<o {
        for b in 0..<batch {
            let s = src + (b * o + c) * p, m = mask + (b * o + c) * p, d = dst + (c * batch + b) * p
            for q in 0..<p { d[q] = m[q] > 0 ? s[q] : 0 }
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

/// NCHW convolutions by im2col + sgemm. The kernels work through the batch a few images at a time, so that each
/// chunk's im2col matrix (K, n·P) stays in the core's L2 cache between being
/// built and being read by its GEMM (a whole batch's can be 7 MB). Nothing
/// of that size is kept for the backward pass: it rebuilds the columns per
/// chunk, which costs less than storing and re-reading them from memory.
@usableFromInline
enum Im2colKernels {
    /// Images per chunk: as many as fit the backend's im2col budget.
    static func chunkSize(columnsPerImage: Int, batch: Int, on backend: Backend) -> Int {
        max(1, min(batch, backend.convolutionColumnBudget / max(columnsPerImage, 1)))
    }

    /// Uninitialized scratch floats; the caller deallocates.
    static func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        .allocate(capacity: max(count, 1))
    }

    /// The storage of three read-only tensors at once.
    static func reading<R>(_ a: Tensor, _ b: Tensor, _ c: Tensor,
                           _ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) -> R) -> R {
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                c.scalars.withUnsafeBufferPointer { pc in body(pa, pb, pc) }
            }
        }
    }

    @usableFromInline
    static func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                              relu: Bool = false, on backend: Backend) -> Tensor {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1],
                     "conv2d: input \(x.shape) does not match weight \(weight.shape) (O, C, kh, kw)")
        precondition(bias.shape == [weight.shape[0]], "conv2d: bias \(bias.shape) for weight \(weight.shape)")
        let g = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                             kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], stride: stride, padding: padding)
        let (b, o, k, p) = (x.shape[0], weight.shape[0], g.columnLength, g.outputPositions)
        let chunk = chunkSize(columnsPerImage: k * p, batch: b, on: backend)
        let cols = scratch(k * chunk * p), z = scratch(o * chunk * p)
        defer { cols.deallocate(); z.deallocate() }
        return Tensor(shape: [b, o, g.outputHeight, g.outputWidth]) { out in
            reading(x, weight, bias) { xs, w, bb in
                for start in Swift.stride(from: 0, to: b, by: chunk) {
                    let n = min(chunk, b - start)
                    g.im2col(xs.baseAddress! + start * g.inputSize, batch: n, into: cols, on: backend)
                    // Z (O, n·P) = W (O, K) · cols (K, n·P)
                    backend.sgemm(transposeA: false, transposeB: false, m: o, n: n * p, k: k,
                              w.baseAddress!, lda: k, cols, ldb: n * p, beta: 0, z, ldc: n * p)
                    channelMajorToNCHW(z, batch: n, channels: o, positions: p, bias: bb.baseAddress!, relu: relu,
                                       into: out.baseAddress! + start * o * p)
                }
            }
        }
    }

    /// (dx or .zero, dW, db) for dy (B, O, Ho, Wo); with `reluOutput`, dy
    /// is first masked where that fused ReLU's output was zero.
    @usableFromInline
    static func conv2dBackward(_ dy: Tensor, x: Tensor, weight: Tensor, stride: Int, padding: Int,
                               inputGradient: Bool, reluOutput: Tensor? = nil,
                               on backend: Backend) -> (Tensor, Tensor, Tensor) {
        if dy.isSymbolicZero { return (.zero, .zero, .zero) }
        let g = ConvGeometry(channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                             kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], stride: stride, padding: padding)
        let (b, o, k, p) = (x.shape[0], weight.shape[0], g.columnLength, g.outputPositions)
        let chunk = chunkSize(columnsPerImage: k * p, batch: b, on: backend)
        let cols = scratch(k * chunk * p), dz = scratch(o * chunk * p), dCols = scratch(inputGradient ? k * chunk * p : 0)
        defer { cols.deallocate(); dz.deallocate(); dCols.deallocate() }
        var dw = [Float](repeating: 0, count: o * k)
        var db = [Float](repeating: 0, count: o)
        // col2im writes every plane of its chunk: no need to zero dx first.
        var dx = [Float](unsafeUninitializedCapacity: inputGradient ? x.count : 0) { _, n in n = inputGradient ? x.count : 0 }
        reading(x, dy, weight) { xs, gy, w in
            dw.withUnsafeMutableBufferPointer { dW in
                dx.withUnsafeMutableBufferPointer { dxs in
                    for start in Swift.stride(from: 0, to: b, by: chunk) {
                        let n = min(chunk, b - start)
                        g.im2col(xs.baseAddress! + start * g.inputSize, batch: n, into: cols, on: backend)
                        if let reluOutput {
                            reluOutput.scalars.withUnsafeBufferPointer { m in
                                nchwToChannelMajor(gy.baseAddress! + start * o * p, maskedBy: m.baseAddress! + start * o * p,
                                                   batch: n, channels: o, positions: p, into: dz)
                            }
                        } else {
                            nchwToChannelMajor(gy.baseAddress! + start * o * p, batch: n, channels: o, positions: p, into: dz)
                        }
                        // dW (O, K) += dZ (O, n·P) · colsᵀ (n·P, K)
                        backend.sgemm(transposeA: false, transposeB: true, m: o, n: k, k: n * p,
                                  dz, lda: n * p, cols, ldb: n * p, beta: start == 0 ? 0 : 1, dW.baseAddress!, ldc: k)
                        for ch in 0..<o { db[ch] += vectorSum(dz + ch * n * p, count: n * p) }
                        guard inputGradient else { continue }
                        // dcols (K, n·P) = Wᵀ (K, O) · dZ (O, n·P)
                        backend.sgemm(transposeA: true, transposeB: false, m: k, n: n * p, k: o,
                                  w.baseAddress!, lda: k, dz, ldb: n * p, beta: 0, dCols, ldc: n * p)
                        g.col2im(dCols, batch: n, into: dxs.baseAddress! + start * g.inputSize, on: backend)
                    }
                }
            }
        }
        return (inputGradient ? Tensor(shape: x.shape, scalars: dx) : .zero,
                Tensor(shape: weight.shape, scalars: dw), Tensor(shape: [o], scalars: db))
    }

    /// The geometry of the convolution whose input gradient a transposed
    /// convolution is: from its output (O, Ho, Wo) to its input (C, H, W).
    static func adjointGeometry(input x: Tensor, weight: Tensor, stride: Int, padding: Int,
                                outputHeight: Int, outputWidth: Int) -> ConvGeometry {
        let g = ConvGeometry(channels: weight.shape[1], height: outputHeight, width: outputWidth,
                             kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], stride: stride, padding: padding)
        precondition(g.outputHeight == x.shape[2] && g.outputWidth == x.shape[3], "convTranspose2d: inconsistent geometry")
        return g
    }

    @usableFromInline
    static func convTransposeForward(_ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, padding: Int,
                                     outputPadding: Int, relu: Bool = false, on backend: Backend) -> Tensor
    {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[0],
                     "convTranspose2d: input \(x.shape) does not match weight \(weight.shape) (C, O, kh, kw)")
        precondition(bias.shape == [weight.shape[1]], "convTranspose2d: bias \(bias.shape) for weight \(weight.shape)")
        precondition(outputPadding >= 0 && outputPadding < max(stride, 1), "output padding must be smaller than the stride")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[1]
        let outH = (h - 1) * stride - 2 * padding + weight.shape[2] + outputPadding
        let outW = (w - 1) * stride - 2 * padding + weight.shape[3] + outputPadding
        let g = adjointGeometry(input: x, weight: weight, stride: stride, padding: padding,
                                outputHeight: outH, outputWidth: outW)
        if o == 0 { return Tensor(zeros: [b, 0, outH, outW]) }  // an unused head
        let (k, p, plane) = (g.columnLength, h * w, outH * outW)
        let chunk = chunkSize(columnsPerImage: k * p, batch: b, on: backend)
        let xc = scratch(c * chunk * p), cols = scratch(k * chunk * p)
        defer { xc.deallocate(); cols.deallocate() }
        return Tensor(shape: [b, o, outH, outW]) { out in
            reading(x, weight, bias) { xs, wt, bb in
                for start in Swift.stride(from: 0, to: b, by: chunk) {
                    let n = min(chunk, b - start)
                    nchwToChannelMajor(xs.baseAddress! + start * c * p, batch: n, channels: c, positions: p, into: xc)
                    // cols (O·kh·kw, n·H·W) = Wᵀ · X (C, n·H·W), W viewed as (C, O·kh·kw)
                    backend.sgemm(transposeA: true, transposeB: false, m: k, n: n * p, k: c,
                              wt.baseAddress!, lda: k, xc, ldb: n * p, beta: 0, cols, ldc: n * p)
                    g.col2im(cols, batch: n, into: out.baseAddress! + start * o * plane, on: backend)
                }
                for image in 0..<b {
                    for ch in 0..<o {
                        let dst = out.baseAddress! + (image * o + ch) * plane
                        let add = bb[ch]
                        if relu {
                            for q in 0..<plane { dst[q] = Swift.max(dst[q] + add, 0) }
                        } else {
                            for q in 0..<plane { dst[q] += add }
                        }
                    }
                }
            }
        }
    }

    @usableFromInline
    static func convTransposeBackward(_ dy: Tensor, x: Tensor, weight: Tensor, outputShape: [Int], stride: Int,
                                      padding: Int, on backend: Backend) -> (Tensor, Tensor, Tensor)
    {
        if dy.isSymbolicZero || weight.shape[1] == 0 { return (.zero, .zero, .zero) }
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let g = adjointGeometry(input: x, weight: weight, stride: stride, padding: padding,
                                outputHeight: outputShape[2], outputWidth: outputShape[3])
        let (o, k, p) = (weight.shape[1], g.columnLength, h * w)
        let chunk = chunkSize(columnsPerImage: k * p, batch: b, on: backend)
        let dCols = scratch(k * chunk * p), xc = scratch(c * chunk * p), dxc = scratch(c * chunk * p)
        defer { dCols.deallocate(); xc.deallocate(); dxc.deallocate() }
        var dw = [Float](repeating: 0, count: c * k)
        let dx = Tensor(shape: x.shape) { dxs in
            reading(dy, x, weight) { gy, xs, wt in
                dw.withUnsafeMutableBufferPointer { dW in
                    for start in Swift.stride(from: 0, to: b, by: chunk) {
                        let n = min(chunk, b - start)
                        g.im2col(gy.baseAddress! + start * g.inputSize, batch: n, into: dCols, on: backend)
                        nchwToChannelMajor(xs.baseAddress! + start * c * p, batch: n, channels: c, positions: p, into: xc)
                        // dW (C, O·kh·kw) += X (C, n·H·W) · dColsᵀ
                        backend.sgemm(transposeA: false, transposeB: true, m: c, n: k, k: n * p,
                                  xc, lda: n * p, dCols, ldb: n * p, beta: start == 0 ? 0 : 1, dW.baseAddress!, ldc: k)
                        // dX (C, n·H·W) = W (C, O·kh·kw) · dCols
                        backend.sgemm(transposeA: false, transposeB: false, m: c, n: n * p, k: k,
                                  wt.baseAddress!, lda: k, dCols, ldb: n * p, beta: 0, dxc, ldc: n * p)
                        channelMajorToNCHW(dxc, batch: n, channels: c, positions: p, bias: nil,
                                           into: dxs.baseAddress! + start * c * p)
                    }
                }
            }
        }
        let db = channelSums(dy, batch: b, channels: o, positions: g.inputSize / max(o, 1))
        return (dx, Tensor(shape: weight.shape, scalars: dw), db)
    }
}
