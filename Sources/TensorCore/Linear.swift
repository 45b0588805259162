import _Differentiation

// Dense layers and matrix products, each forward op followed by its VJP.
// Legend: B batch (rows), D input features, H output features.
// Layouts follow PyTorch's Linear: weight (H, D), bias (H).

// MARK: - matmul

/// `a · b` for `a` (M, K) and `b` (K, N).
@differentiable(reverse)
public func matmul(_ a: Tensor, _ b: Tensor, on backend: Backend) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0],
                 "matmul of shapes \(a.shape) and \(b.shape)")
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    return Tensor(shape: [m, n]) { c in
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                backend.gemm(transposeA: false, transposeB: false, m: m, n: n, k: k,
                          pa.baseAddress!, lda: k, pb.baseAddress!, ldb: n,
                          beta: 0, c.baseAddress!, ldc: n)
            }
        }
    }
}

@derivative(of: matmul)
@usableFromInline
func _vjpMatmul(_ a: Tensor, _ b: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor)) {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    return (matmul(a, b, on: backend), { dc in
        if dc.isSymbolicZero { return (.zero, .zero) }
        // da (M, K) = dc (M, N) · bᵀ ; db (K, N) = aᵀ · dc
        let da = Tensor(shape: [m, k]) { out in
            dc.scalars.withUnsafeBufferPointer { pdc in
                b.scalars.withUnsafeBufferPointer { pb in
                    backend.gemm(transposeA: false, transposeB: true, m: m, n: k, k: n,
                              pdc.baseAddress!, lda: n, pb.baseAddress!, ldb: n,
                              beta: 0, out.baseAddress!, ldc: k)
                }
            }
        }
        let db = Tensor(shape: [k, n]) { out in
            a.scalars.withUnsafeBufferPointer { pa in
                dc.scalars.withUnsafeBufferPointer { pdc in
                    backend.gemm(transposeA: true, transposeB: false, m: k, n: n, k: m,
                              pa.baseAddress!, lda: k, pdc.baseAddress!, ldb: n,
                              beta: 0, out.baseAddress!, ldc: n)
                }
            }
        }
        return (da, db)
    })
}

// MARK: - linear

/// `x · weightᵀ + bias`: x (B, D), weight (H, D), bias (H) → (B, H).
@differentiable(reverse)
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend) -> Tensor {
    LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend)
}

@derivative(of: linear)
@usableFromInline
func _vjpLinear(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let y = LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend)
    return (y, { dy in
        let (dw, db) = LinearKernels.parameterGradients(dy, x: x, weight: weight, on: backend)
        return (LinearKernels.inputGradient(dy, x: x, weight: weight, on: backend), dw, db)
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
    let y = LinearKernels.forward(x, weight: weight, bias: bias, relu: false, on: backend)
    return (y, { dy in LinearKernels.parameterGradients(dy, x: x, weight: weight, on: backend) })
}

// MARK: - linear + ReLU (fused)

/// `relu(x · weightᵀ + bias)` in one pass over the output: x (B, D),
/// weight (H, D), bias (H) → (B, H).
@differentiable(reverse)
public func linearReLU(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend) -> Tensor {
    LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend)
}

@derivative(of: linearReLU)
@usableFromInline
func _vjpLinearReLU(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor, Tensor))
{
    let y = LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend)
    return (y, { dy in
        let dpre = reluBackward(dy, output: y)
        let (dw, db) = LinearKernels.parameterGradients(dpre, x: x, weight: weight, on: backend)
        return (LinearKernels.inputGradient(dpre, x: x, weight: weight, on: backend), dw, db)
    })
}

@derivative(of: linearReLU, wrt: (weight, bias))
@usableFromInline
func _vjpLinearReLUParameters(_ x: Tensor, weight: Tensor, bias: Tensor, on backend: Backend)
    -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor))
{
    let y = LinearKernels.forward(x, weight: weight, bias: bias, relu: true, on: backend)
    return (y, { dy in
        LinearKernels.parameterGradients(reluBackward(dy, output: y), x: x, weight: weight, on: backend)
    })
}

// MARK: - kernels shared by the linear ops

@usableFromInline
enum LinearKernels {
    @usableFromInline
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, relu: Bool, on backend: Backend) -> Tensor {
        precondition(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1],
                     "linear: input \(x.shape) does not match weight \(weight.shape) (out, in)")
        precondition(bias.shape == [weight.shape[0]],
                     "linear: bias \(bias.shape) does not match weight \(weight.shape)")
        let (b, d, h) = (x.shape[0], x.shape[1], weight.shape[0])
        return Tensor(shape: [b, h]) { y in
            bias.scalars.withUnsafeBufferPointer { pb in
                for row in 0..<b {
                    (y.baseAddress! + row * h).update(from: pb.baseAddress!, count: h)
                }
            }
            x.scalars.withUnsafeBufferPointer { px in
                weight.scalars.withUnsafeBufferPointer { pw in
                    // y (B, H) += x (B, D) · wᵀ (D, H)
                    backend.gemm(transposeA: false, transposeB: true, m: b, n: h, k: d,
                              px.baseAddress!, lda: d, pw.baseAddress!, ldb: d,
                              beta: 1, y.baseAddress!, ldc: h)
                }
            }
            if relu {
                for i in 0..<y.count { y[i] = max(y[i], 0) }
            }
        }
    }

    /// dx (B, D) = dy (B, H) · w (H, D).
    @usableFromInline
    static func inputGradient(_ dy: Tensor, x: Tensor, weight: Tensor, on backend: Backend) -> Tensor {
        if dy.isSymbolicZero { return .zero }
        let (b, d, h) = (x.shape[0], x.shape[1], weight.shape[0])
        return Tensor(shape: [b, d]) { dx in
            dy.scalars.withUnsafeBufferPointer { pdy in
                weight.scalars.withUnsafeBufferPointer { pw in
                    backend.gemm(transposeA: false, transposeB: false, m: b, n: d, k: h,
                              pdy.baseAddress!, lda: h, pw.baseAddress!, ldb: d,
                              beta: 0, dx.baseAddress!, ldc: d)
                }
            }
        }
    }

    /// dw (H, D) = dyᵀ (H, B) · x (B, D); db (H) = Σ_rows dy.
    @usableFromInline
    static func parameterGradients(_ dy: Tensor, x: Tensor, weight: Tensor, on backend: Backend) -> (Tensor, Tensor) {
        if dy.isSymbolicZero { return (.zero, .zero) }
        let (b, d, h) = (x.shape[0], x.shape[1], weight.shape[0])
        let dw = Tensor(shape: [h, d]) { dw in
            dy.scalars.withUnsafeBufferPointer { pdy in
                x.scalars.withUnsafeBufferPointer { px in
                    backend.gemm(transposeA: true, transposeB: false, m: h, n: d, k: b,
                              pdy.baseAddress!, lda: h, px.baseAddress!, ldb: d,
                              beta: 0, dw.baseAddress!, ldc: d)
                }
            }
        }
        let db = Tensor(shape: [h]) { db in
            db.initialize(repeating: 0)
            dy.scalars.withUnsafeBufferPointer { pdy in
                for row in 0..<b {
                    let r = pdy.baseAddress! + row * h
                    for j in 0..<h { db[j] += r[j] }
                }
            }
        }
        return (dw, db)
    }
}

/// dy masked where the ReLU output was zero: the ReLU pullback.
@usableFromInline
func reluBackward(_ dy: Tensor, output y: Tensor) -> Tensor {
    if dy.isSymbolicZero { return .zero }
    return Tensor(shape: y.shape) { out in
        dy.scalars.withUnsafeBufferPointer { g in
            y.scalars.withUnsafeBufferPointer { v in
                for i in 0..<out.count { out[i] = v[i] > 0 ? g[i] : 0 }
            }
        }
    }
}
