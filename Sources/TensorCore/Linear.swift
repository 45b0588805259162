import _Differentiation
import CKernels

// Dense layers and matrix products, each forward op followed by its VJP.
// Legend: B batch (rows), D input features, H output features.
// Layouts follow PyTorch's Linear: weight (H, D), bias (H).
//
// Every product goes through `Backend.matmul` with transposition flags, never
// explicit transposes. The forward pass prepares its operands once (in bf16,
// rounds them) and the pullback reuses them.

// MARK: - matmul

/// `a · b` for `a` (M, K) and `b` (K, N).
@differentiable(reverse)
public func matmul(_ a: Tensor, _ b: Tensor, on backend: Backend) -> Tensor {
    matmulForward(a, b, on: backend).value
}

func matmulForward(_ a: Tensor, _ b: Tensor, on backend: Backend)
    -> (value: Tensor, a: Backend.MatrixOperand, b: Backend.MatrixOperand)
{
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0],
                 "matmul of shapes \(a.shape) and \(b.shape)")
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    let (oa, ob) = (backend.operand(a, rows: m, columns: k), backend.operand(b, rows: k, columns: n))
    let c = Tensor(shape: [m, n]) { c in backend.matmul(oa, transposed: false, ob, transposed: false, into: c.baseAddress!, ldc: n) }
    return (c, oa, ob)
}

@derivative(of: matmul)
@usableFromInline
func _vjpMatmul(_ a: Tensor, _ b: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor)) {
    let (c, oa, ob) = matmulForward(a, b, on: backend)
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    return (c, { dc in
        if dc.isSymbolicZero { return (.zero, .zero) }
        let odc = backend.operand(dc, rows: m, columns: n)
        // da (M, K) = dc (M, N) · bᵀ ; db (K, N) = aᵀ · dc
        let da = Tensor(shape: [m, k]) { backend.matmul(odc, transposed: false, ob, transposed: true, into: $0.baseAddress!, ldc: k) }
        let db = Tensor(shape: [k, n]) { backend.matmul(oa, transposed: true, odc, transposed: false, into: $0.baseAddress!, ldc: n) }
        return (da, db)
    })
}

// MARK: - linear

/// `x · weightᵀ + bias`: x (B, D), weight (H, D), bias (H) → (B, H).
@differentiable(reverse)
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend) -> Tensor {
    LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend).y
}

@derivative(of: linear)
@usableFromInline
func _vjpLinear(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend)
    return (f.y, { dy in
        guard let g = LinearKernels.gradientOperand(dy, f, on: backend) else { return (.zero, .zero, .zero) }
        let (dw, db) = LinearKernels.parameterGradients(dy, g, f, weight: weight, bias: bias, on: backend)
        return (LinearKernels.inputGradient(g, f, on: backend), dw, db)
    })
}

/// The same derivative when `x` is not being differentiated (the first layer,
/// whose input is data): skips the (B, D) input gradient, a third of that
/// layer's backward FLOPs. Autodiff picks this minimal configuration itself.
@derivative(of: linear, wrt: (weight, bias))
@usableFromInline
func _vjpLinearParameters(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let f = LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend)
    return (f.y, { dy in
        guard let g = LinearKernels.gradientOperand(dy, f, on: backend) else { return (.zero, .zero) }
        return LinearKernels.parameterGradients(dy, g, f, weight: weight, bias: bias, on: backend)
    })
}

// MARK: - linear + ReLU (fused)

/// `relu(x · weightᵀ + bias)`, the ReLU applied by the product's epilogue:
/// x (B, D), weight (H, D), bias (H) → (B, H).
@differentiable(reverse)
public func linearReLU(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend) -> Tensor {
    LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend).y
}

@derivative(of: linearReLU)
@usableFromInline
func _vjpLinearReLU(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let f = LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend)
    return (f.y, { dy in
        guard let (g, sums) = LinearKernels.reluGradientOperand(dy, f, on: backend) else { return (.zero, .zero, .zero) }
        let (dw, db) = LinearKernels.parameterGradients(g.values, g, f, weight: weight, bias: bias, biasSums: sums,
                                                        on: backend)
        return (LinearKernels.inputGradient(g, f, on: backend), dw, db)
    })
}

@derivative(of: linearReLU, wrt: (weight, bias))
@usableFromInline
func _vjpLinearReLUParameters(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let f = LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend)
    return (f.y, { dy in
        guard let (g, sums) = LinearKernels.reluGradientOperand(dy, f, on: backend) else { return (.zero, .zero) }
        return LinearKernels.parameterGradients(g.values, g, f, weight: weight, bias: bias, biasSums: sums, on: backend)
    })
}

// MARK: - kernels shared by the linear ops

@usableFromInline
enum LinearKernels {
    /// The forward result and the operands the pullback reuses.
    @usableFromInline
    struct Forward {
        let y: Tensor                    // (B, H)
        /// x (B, D) as a dense operand, or as sparse rows when mostly zero.
        let x: Input
        let weight: Tensor               // (H, D)
        /// The weight as a dense product's operand (made by the dense forward; on demand otherwise).
        let weightOperand: Backend.MatrixOperand?
        let batch: Int
        var inputs: Int { weight.shape[1] }
        var outputs: Int { weight.shape[0] }
    }

    @usableFromInline
    enum Input {
        case dense(Backend.MatrixOperand)
        case sparse(SparseRowsOperand)
    }

    @usableFromInline
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, relu: Bool, on backend: Backend) -> Forward {
        precondition(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1],
                     "linear: input \(x.shape) does not match weight \(weight.shape) (out, in)")
        precondition(bias.shape == [weight.shape[0]],
                     "linear: bias \(bias.shape) does not match weight \(weight.shape)")
        let (b, d, h) = (x.shape[0], x.shape[1], weight.shape[0])
        if let sparse = SparseRowsOperand(x, outputs: h, on: backend) {
            let y = Tensor(shape: [b, h]) { y in
                bias.scalars.withUnsafeBufferPointer { pb in
                    sparse.linear(weight: weight, bias: pb.baseAddress!, relu: relu, into: y.baseAddress!, on: backend)
                }
            }
            return Forward(y: y, x: .sparse(sparse), weight: weight, weightOperand: nil, batch: b)
        }
        let ox = backend.operand(x, rows: b, columns: d), ow = backend.operand(weight, rows: h, columns: d)
        let y = Tensor(shape: [b, h]) { y in
            bias.scalars.withUnsafeBufferPointer { pb in
                // y (B, H) = x (B, D) · wᵀ (D, H) + bias, ReLU in the epilogue
                backend.matmul(ox, transposed: false, ow, transposed: true, into: y.baseAddress!, ldc: h,
                               bias: pb.baseAddress!, relu: relu)
            }
        }
        return Forward(y: y, x: .dense(ox), weight: weight, weightOperand: ow, batch: b)
    }

    /// dy as the backward products' operand (nil for a symbolic zero).
    @usableFromInline
    static func gradientOperand(_ dy: Tensor, _ f: Forward, on backend: Backend) -> Backend.MatrixOperand? {
        guard !dy.isSymbolicZero else { return nil }
        if case .sparse = f.x {
            // The sparse weight gradient reads dy itself: no bf16 copy.
            return Backend.MatrixOperand(rows: f.batch, columns: f.outputs, values: dy, rounded: nil)
        }
        return backend.operand(dy, rows: f.batch, columns: f.outputs)
    }

    /// The ReLU pullback of dy as the backward products' operand, with its
    /// column sums (the bias gradient), in one pass (`OutputGradient`): f32
    /// values where f32 or the sparse weight gradient reads them, bf16 where
    /// the dense products do (nil for a symbolic zero).
    static func reluGradientOperand(_ dy: Tensor, _ f: Forward, on backend: Backend)
        -> (Backend.MatrixOperand, [Float])?
    {
        guard !dy.isSymbolicZero else { return nil }
        var sparse = false
        if case .sparse = f.x { sparse = true }
        let g = OutputGradient(relu: dy, output: f.y, channels: f.outputs, readsValues: sparse,
                               rounds: backend.bf16 && !sparse)
        return (Backend.MatrixOperand(rows: f.batch, columns: f.outputs, values: g.values, rounded: g.rounded), g.biasSums!)
    }

    /// dx (B, D) = dy (B, H) · w (H, D).
    @usableFromInline
    static func inputGradient(_ dy: Backend.MatrixOperand, _ f: Forward, on backend: Backend) -> Tensor {
        let dyOperand = dy.rounded == nil && backend.bf16 ? backend.operand(dy.values, rows: dy.rows, columns: dy.columns) : dy
        let w = f.weightOperand ?? backend.operand(f.weight, rows: f.outputs, columns: f.inputs)
        return Tensor(shape: [f.batch, f.inputs]) { dx in
            backend.matmul(dyOperand, transposed: false, w, transposed: false, into: dx.baseAddress!, ldc: f.inputs)
        }
    }

    /// dw (H, D) = dyᵀ (H, B) · x (B, D); db (H) = Σ_rows dy. Written into
    /// the backend's gradient sink when it holds these parameters (then the
    /// returned tangents are symbolic zeros), else returned.
    @usableFromInline
    static func parameterGradients(_ dy: Tensor, _ g: Backend.MatrixOperand, _ f: Forward, weight: Tensor, bias: Tensor,
                                   biasSums: [Float]? = nil, on backend: Backend) -> (Tensor, Tensor) {
        let (b, d, h) = (f.batch, f.inputs, f.outputs)
        func weightGradient(into dw: UnsafeMutablePointer<Float>, accumulate: Bool) {
            switch f.x {
            case let .dense(x):
                backend.matmul(g, transposed: true, x, transposed: false, into: dw, ldc: d, accumulate: accumulate)
            case let .sparse(x):
                x.weightGradient(dy, outputs: h, into: dw, accumulate: accumulate, on: backend)
            }
        }
        func biasGradient(into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
            guard accumulate || biasSums != nil else {
                dy.scalars.withUnsafeBufferPointer { ck_column_sums($0.baseAddress, b, h, db) }
                return
            }
            // The sums made with the ReLU's mask (in ck_column_sums' order), or made now.
            let sums = biasSums ?? dy.scalars.withUnsafeBufferPointer { pdy in
                [Float](unsafeUninitializedCapacity: h) { out, n in
                    ck_column_sums(pdy.baseAddress, b, h, out.baseAddress)
                    n = h
                }
            }
            if accumulate { for j in 0..<h { db[j] += sums[j] } } else { db.update(from: sums, count: h) }
        }
        var dw = Tensor.zero, db = Tensor.zero
        if let sink = backend.gradientSink, let slot = sink.slot(for: weight) {
            weightGradient(into: slot.pointer, accumulate: slot.accumulate)
            sink.checkWritten(slot.pointer, count: h * d)
        } else {
            dw = Tensor(shape: [h, d]) { weightGradient(into: $0.baseAddress!, accumulate: false) }
        }
        if let sink = backend.gradientSink, let slot = sink.slot(for: bias) {
            biasGradient(into: slot.pointer, accumulate: slot.accumulate)
            sink.checkWritten(slot.pointer, count: h)
        } else {
            db = Tensor(shape: [h]) { biasGradient(into: $0.baseAddress!, accumulate: false) }
        }
        return (dw, db)
    }
}

/// A linear layer's input held as sparse rows (CSR) when most of it is
/// zero (interactions, counts, one-hot codes): the forward product and the
/// weight gradient then cost in proportion to the nonzeros, plus one pass
/// over the weight, instead of B·D·H multiply-adds each. Chosen per call,
/// from the input alone, when a cost model measured on this machine's kernels
/// says the sparse kernels are faster (see `init`); the result is then
/// computed in a fixed order (`ck_sparse_linear`), so the choice and the
/// result depend on that input alone (under `--reproducible`, a fixed
/// micro-shard, whatever the rank count).
@usableFromInline
struct SparseRowsOperand {
    let rows: Int
    let columns: Int
    let starts: [Int64]
    let columnIndices: [Int32]
    /// The nonzero values, rounded to bf16 under bf16 (as a dense bf16 operand is).
    let values: [Float]

    /// Time per nonzero per output, per weight per pass (the tile transposition),
    /// and per multiply-add of a dense product (fp32, bf16 at twice the rate),
    /// in ns, measured with `ck_sparse_linear` and oneDNN's matmul on this
    /// machine (AMD EPYC Zen 4): B = 500, D = 3000, H = 600 takes 1.5 ms
    /// sparse at 1 % nonzeros against 17 ms dense in fp32.
    static let nanosecondsPerNonzeroOutput = 0.07
    static let nanosecondsPerWeight = 0.7
    static func nanosecondsPerMultiplyAdd(bf16: Bool) -> Double { bf16 ? 0.01 : 0.02 }

    /// At most this share of the values nonzero: sparse data (interactions
    /// are about 1 % nonzero, count matrices 2–10 %), not images (MNIST's
    /// digits are a fifth nonzero, where the sparse kernels would still win
    /// in fp32 at a large batch, by less, and would change image runs' bits).
    static let densityCap = 0.1

    /// The most nonzeros with which the sparse product is predicted to be
    /// faster than the dense one, for a (B, D) input and H outputs, within
    /// the density cap; 0 when never.
    static func nonzeroLimit(rows b: Int, columns d: Int, outputs h: Int, bf16: Bool) -> Int {
        let spare = Double(b) * Double(d) * nanosecondsPerMultiplyAdd(bf16: bf16) - Double(d) * nanosecondsPerWeight
        guard spare > 0 else { return 0 }
        return min(Int(spare / nanosecondsPerNonzeroOutput), Int(densityCap * Double(b) * Double(d)))
    }

    /// x as sparse rows, or nil when it has too many nonzeros for the sparse
    /// kernels to win (the scan stops as soon as it knows).
    init?(_ x: Tensor, outputs h: Int, on backend: Backend) {
        let (b, d) = (x.shape[0], x.shape[1])
        let limit = Self.nonzeroLimit(rows: b, columns: d, outputs: h, bf16: backend.bf16)
        guard limit > 0, b > 0, d > 0, h > 0 else { return nil }
        // Counted first (stopping past the limit: dense data costs a glance), then gathered into arrays of that size.
        let nonzero = x.scalars.withUnsafeBufferPointer { ck_count_nonzero($0.baseAddress, b * d, limit) }
        guard nonzero <= limit else { return nil }
        var starts = [Int64](repeating: 0, count: b + 1)
        var columns = [Int32](repeating: 0, count: nonzero + 16)
        var values = [Float](repeating: 0, count: nonzero + 16)
        let count = x.scalars.withUnsafeBufferPointer { px in
            ck_dense_to_csr(px.baseAddress, b, d, nonzero, &starts, &columns, &values)
        }
        guard count >= 0 else { return nil }
        columns.removeLast(columns.count - Int(count))
        values.removeLast(values.count - Int(count))
        if backend.bf16 { ck_bf16_round_in_place(&values, values.count) }
        rows = b
        self.columns = d
        self.starts = starts
        columnIndices = columns
        self.values = values
    }

    var nonzeroCount: Int { values.count }

    /// y (B, H) = x · weightᵀ + bias, then ReLU when asked.
    func linear(weight: Tensor, bias: UnsafePointer<Float>, relu: Bool, into y: UnsafeMutablePointer<Float>,
                on backend: Backend) {
        let h = weight.shape[0]
        withTile { tile in
            backend.timingKernel(flops: 2 * nonzeroCount * h, "sparse matmul \(rows)×\(columns)·\(columns)×\(h)ᵀ") {
                weight.scalars.withUnsafeBufferPointer { pw in
                    ck_sparse_linear(starts, columnIndices, values, rows, pw.baseAddress, h, columns, bias, relu ? 1 : 0,
                                     backend.bf16 ? 1 : 0, tile, y)
                }
            }
        }
    }

    /// The kernels' scratch tile, uninitialized: they write all of it before
    /// reading (the forward fills it from the weights, the gradient zeroes it),
    /// so it is not zero-filled here on every call.
    private func withTile(_ body: (UnsafeMutablePointer<Float>) -> Void) {
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: ck_sparse_tile_floats(columns))
        defer { tile.deallocate() }
        body(tile)
    }

    /// dw (H, D) = dyᵀ · x, written or added to dw.
    func weightGradient(_ dy: Tensor, outputs h: Int, into dw: UnsafeMutablePointer<Float>, accumulate: Bool,
                        on backend: Backend) {
        withTile { tile in
            backend.timingKernel(flops: 2 * nonzeroCount * h, "sparse matmul \(h)×\(rows)ᵀ·\(rows)×\(columns)") {
                dy.scalars.withUnsafeBufferPointer { pdy in
                    ck_sparse_linear_weight_gradient(starts, columnIndices, values, rows, pdy.baseAddress, h, columns,
                                                     backend.bf16 ? 1 : 0, accumulate ? 1 : 0, tile, dw)
                }
            }
        }
    }
}

/// dy masked where the ReLU output was zero: the ReLU pullback.
@usableFromInline
func reluBackward(_ dy: Tensor, output y: Tensor) -> Tensor {
    if dy.isSymbolicZero { return .zero }
    precondition(dy.shape == y.shape, "reluBackward: dy \(dy.shape), y \(y.shape)")
    return Tensor(shape: y.shape) { out in
        dy.scalars.withUnsafeBufferPointer { g in
            y.scalars.withUnsafeBufferPointer { v in ck_relu_backward(g.baseAddress, v.baseAddress, out.baseAddress, out.count) }
        }
    }
}
