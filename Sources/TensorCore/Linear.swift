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
        let dpre = reluBackward(dy, output: f.y)
        guard let g = LinearKernels.gradientOperand(dpre, f, on: backend) else { return (.zero, .zero, .zero) }
        let (dw, db) = LinearKernels.parameterGradients(dpre, g, f, weight: weight, bias: bias, on: backend)
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
        let dpre = reluBackward(dy, output: f.y)
        guard let g = LinearKernels.gradientOperand(dpre, f, on: backend) else { return (.zero, .zero) }
        return LinearKernels.parameterGradients(dpre, g, f, weight: weight, bias: bias, on: backend)
    })
}

// MARK: - kernels shared by the linear ops

@usableFromInline
enum LinearKernels {
    /// The forward result and the operands the pullback reuses.
    @usableFromInline
    struct Forward {
        let y: Tensor                    // (B, H)
        let x: Backend.MatrixOperand     // (B, D)
        let weight: Backend.MatrixOperand  // (H, D)
        var batch: Int { x.rows }
        var inputs: Int { x.columns }
        var outputs: Int { weight.rows }
    }

    @usableFromInline
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, relu: Bool, on backend: Backend) -> Forward {
        precondition(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1],
                     "linear: input \(x.shape) does not match weight \(weight.shape) (out, in)")
        precondition(bias.shape == [weight.shape[0]],
                     "linear: bias \(bias.shape) does not match weight \(weight.shape)")
        let (b, d, h) = (x.shape[0], x.shape[1], weight.shape[0])
        let ox = backend.operand(x, rows: b, columns: d), ow = backend.operand(weight, rows: h, columns: d)
        let y = Tensor(shape: [b, h]) { y in
            bias.scalars.withUnsafeBufferPointer { pb in
                // y (B, H) = x (B, D) · wᵀ (D, H) + bias, ReLU in the epilogue
                backend.matmul(ox, transposed: false, ow, transposed: true, into: y.baseAddress!, ldc: h,
                               bias: pb.baseAddress!, relu: relu)
            }
        }
        return Forward(y: y, x: ox, weight: ow)
    }

    /// dy as the backward products' operand (nil for a symbolic zero).
    @usableFromInline
    static func gradientOperand(_ dy: Tensor, _ f: Forward, on backend: Backend) -> Backend.MatrixOperand? {
        dy.isSymbolicZero ? nil : backend.operand(dy, rows: f.batch, columns: f.outputs)
    }

    /// dx (B, D) = dy (B, H) · w (H, D).
    @usableFromInline
    static func inputGradient(_ dy: Backend.MatrixOperand, _ f: Forward, on backend: Backend) -> Tensor {
        Tensor(shape: [f.batch, f.inputs]) { dx in
            backend.matmul(dy, transposed: false, f.weight, transposed: false, into: dx.baseAddress!, ldc: f.inputs)
        }
    }

    /// dw (H, D) = dyᵀ (H, B) · x (B, D); db (H) = Σ_rows dy. Written into
    /// the backend's gradient sink when it holds these parameters (then the
    /// returned tangents are symbolic zeros), else returned.
    @usableFromInline
    static func parameterGradients(_ dy: Tensor, _ g: Backend.MatrixOperand, _ f: Forward, weight: Tensor, bias: Tensor,
                                   on backend: Backend) -> (Tensor, Tensor) {
        let (b, d, h) = (f.batch, f.inputs, f.outputs)
        func weightGradient(into dw: UnsafeMutablePointer<Float>, accumulate: Bool) {
            backend.matmul(g, transposed: true, f.x, transposed: false, into: dw, ldc: d, accumulate: accumulate)
        }
        func biasGradient(into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
            dy.scalars.withUnsafeBufferPointer { pdy in
                if accumulate {
                    var sums = [Float](repeating: 0, count: h)
                    ck_column_sums(pdy.baseAddress, b, h, &sums)
                    for j in 0..<h { db[j] += sums[j] }
                } else {
                    ck_column_sums(pdy.baseAddress, b, h, db)
                }
            }
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
