import _Differentiation

// Elementwise ops and reductions, each forward op followed by its VJP.
// Shapes: every op here maps a tensor to one of the same shape, or to a Float.

extension Tensor {
    /// A tensor of this shape whose element i is `f(self[i])`.
    @inlinable
    public func map(_ f: (Float) -> Float) -> Tensor {
        Tensor(shape: shape) { out in
            scalars.withUnsafeBufferPointer { a in
                for i in 0..<out.count { out[i] = f(a[i]) }
            }
        }
    }

    /// A tensor whose element i is `f(self[i], other[i])`; shapes must match.
    @inlinable
    public func zipMap(_ other: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(shape == other.shape, "elementwise op on shapes \(shape) and \(other.shape)")
        return Tensor(shape: shape) { out in
            scalars.withUnsafeBufferPointer { a in
                other.scalars.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = f(a[i], b[i]) }
                }
            }
        }
    }
}

// MARK: - relu

/// max(x, 0) elementwise.
@differentiable(reverse)
public func relu(_ x: Tensor) -> Tensor {
    x.map { Swift.max($0, 0) }
}

@derivative(of: relu)
@usableFromInline
func _vjpRelu(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let y = relu(x)
    return (y, { dy in reluBackward(dy, output: y) })
}

// MARK: - exp

/// e^x elementwise.
@differentiable(reverse)
public func exp(_ x: Tensor) -> Tensor {
    x.map { fastExp($0) }
}

@derivative(of: exp)
@usableFromInline
func _vjpExp(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let y = exp(x)
    return (y, { dy in dy.isSymbolicZero ? .zero : dy.zipMap(y, *) })
}

// MARK: - sigmoid

/// 1 / (1 + e^-x) elementwise, stable for large |x|.
@differentiable(reverse)
public func sigmoid(_ x: Tensor) -> Tensor {
    x.map { v in
        let t = fastExp(-Swift.abs(v))
        return v >= 0 ? 1 / (1 + t) : t / (1 + t)
    }
}

@derivative(of: sigmoid)
@usableFromInline
func _vjpSigmoid(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let y = sigmoid(x)
    return (y, { dy in dy.isSymbolicZero ? .zero : dy.zipMap(y) { g, s in g * s * (1 - s) } })
}

// MARK: - product

/// Elementwise product of two tensors of one shape.
@differentiable(reverse)
public func * (lhs: Tensor, rhs: Tensor) -> Tensor {
    lhs.zipMap(rhs, *)
}

@derivative(of: *)
@usableFromInline
func _vjpMultiply(_ lhs: Tensor, _ rhs: Tensor) -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor)) {
    (lhs * rhs, { dy in
        dy.isSymbolicZero ? (.zero, .zero) : (dy.zipMap(rhs, *), dy.zipMap(lhs, *))
    })
}

// MARK: - scale

/// Every element times a constant.
@differentiable(reverse, wrt: x)
public func * (x: Tensor, factor: Float) -> Tensor {
    x.scaled(by: factor)
}

@derivative(of: *, wrt: x)
@usableFromInline
func _vjpScale(_ x: Tensor, _ factor: Float) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    (x.scaled(by: factor), { dy in dy.scaled(by: factor) })
}

// MARK: - sum

/// Sum of all elements, in a fixed order.
@differentiable(reverse)
public func sum(_ x: Tensor) -> Float {
    x.scalars.vectorSum()
}

@derivative(of: sum)
@usableFromInline
func _vjpSum(_ x: Tensor) -> (value: Float, pullback: (Float) -> Tensor) {
    let shape = x.shape
    return (sum(x), { g in Tensor(repeating: g, shape: shape) })
}

// MARK: - tanh

/// tanh(x) elementwise: 1 − 2/(e^{2x} + 1), stable for large |x|.
@differentiable(reverse)
public func tanh(_ x: Tensor) -> Tensor {
    x.map { v in
        let t = fastExp(-2 * Swift.abs(v))
        let y = (1 - t) / (1 + t)
        return v >= 0 ? y : -y
    }
}

@derivative(of: tanh)
@usableFromInline
func _vjpTanh(_ x: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let y = tanh(x)
    return (y, { dy in dy.isSymbolicZero ? .zero : dy.zipMap(y) { g, t in g * (1 - t * t) } })   // ∂tanh = 1 − tanh²
}
