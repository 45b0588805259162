import _Differentiation

/// A dense, row-major (NCHW for images) tensor of `Float`s.
///
/// A value type: `scalars` is a copy-on-write array, so passing tensors around
/// is cheap and mutation never aliases. `Tensor` is its own tangent vector.
///
/// `Tensor.zero` is a *symbolic* zero: empty shape and empty storage. It stands
/// for "zero of whatever shape is needed" and is what autodiff hands back for a
/// parameter that did not influence the result; `+`, `-`, `+=`, every pullback
/// and flattening accept it. A scalar tensor has shape `[]` and one element,
/// an empty batch has shape `[0, ...]`; neither is the symbolic zero.
public struct Tensor: Differentiable, AdditiveArithmetic, Equatable, Sendable {
    public typealias TangentVector = Tensor

    /// Extent of each dimension, outermost first.
    public var shape: [Int]
    /// Elements in row-major order; `scalars.count == shape.product`.
    public var scalars: [Float]

    /// A tensor with the given shape and elements.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) elements, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// A tensor of `shape` filled with zeros (a real, shaped zero).
    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }

    /// A rank-0 tensor holding `value`.
    public init(_ value: Float) {
        self.init(shape: [], scalars: [value])
    }

    /// A tensor of `shape` whose elements are written by `body` into
    /// uninitialized storage; `body` must write every element.
    @inlinable
    public init(shape: [Int], unsafeUninitialized body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer)
            initialized = count
        }
        self.init(shape: shape, scalars: scalars)
    }

    private init(symbolicZero: Void) {
        shape = []
        scalars = []
    }

    /// The symbolic zero (see the type's documentation).
    public static var zero: Tensor { Tensor(symbolicZero: ()) }

    /// True for the symbolic zero only.
    @inlinable
    public var isSymbolicZero: Bool { scalars.isEmpty && shape.isEmpty }

    /// Number of elements.
    @inlinable
    public var count: Int { scalars.count }

    /// Number of dimensions.
    @inlinable
    public var rank: Int { shape.count }

    /// The value of a one-element tensor.
    public var scalar: Float {
        precondition(scalars.count == 1, "scalar of a tensor with shape \(shape)")
        return scalars[0]
    }

    /// This tensor, or a real zero tensor of `shape` when this is the symbolic zero.
    public func materialized(shape: [Int]) -> Tensor {
        if isSymbolicZero { return Tensor(zeros: shape) }
        precondition(self.shape == shape, "expected shape \(shape), found \(self.shape)")
        return self
    }

    /// The same elements viewed with another shape of equal element count.
    @differentiable(reverse)
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    @derivative(of: reshaped)
    @usableFromInline
    func _vjpReshaped(_ newShape: [Int]) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
        let oldShape = shape
        return (reshaped(newShape), { v in
            v.isSymbolicZero ? .zero : Tensor(shape: oldShape, scalars: v.scalars)
        })
    }

    // MARK: AdditiveArithmetic (symbolic zero aware)

    @differentiable(reverse)
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        if lhs.isSymbolicZero { return rhs }
        if rhs.isSymbolicZero { return lhs }
        precondition(lhs.shape == rhs.shape, "+ of shapes \(lhs.shape) and \(rhs.shape)")
        return Tensor(shape: lhs.shape) { out in
            lhs.scalars.withUnsafeBufferPointer { a in
                rhs.scalars.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = a[i] + b[i] }
                }
            }
        }
    }

    @derivative(of: +)
    @usableFromInline
    static func _vjpAdd(lhs: Tensor, rhs: Tensor) -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor)) {
        (lhs + rhs, { v in (v, v) })
    }

    @differentiable(reverse)
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor {
        if rhs.isSymbolicZero { return lhs }
        if lhs.isSymbolicZero { return rhs.scaled(by: -1) }
        precondition(lhs.shape == rhs.shape, "- of shapes \(lhs.shape) and \(rhs.shape)")
        return Tensor(shape: lhs.shape) { out in
            lhs.scalars.withUnsafeBufferPointer { a in
                rhs.scalars.withUnsafeBufferPointer { b in
                    for i in 0..<out.count { out[i] = a[i] - b[i] }
                }
            }
        }
    }

    @derivative(of: -)
    @usableFromInline
    static func _vjpSubtract(lhs: Tensor, rhs: Tensor) -> (value: Tensor, pullback: (Tensor) -> (Tensor, Tensor)) {
        (lhs - rhs, { v in (v, v.isSymbolicZero ? .zero : v.scaled(by: -1)) })
    }

    public static func += (lhs: inout Tensor, rhs: Tensor) {
        if rhs.isSymbolicZero { return }
        if lhs.isSymbolicZero { lhs = rhs; return }
        precondition(lhs.shape == rhs.shape, "+= of shapes \(lhs.shape) and \(rhs.shape)")
        lhs.scalars.withUnsafeMutableBufferPointer { a in
            rhs.scalars.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += b[i] }
            }
        }
    }

    public static func -= (lhs: inout Tensor, rhs: Tensor) {
        lhs = lhs - rhs
    }

    public mutating func move(by offset: Tensor) {
        self += offset
    }

    /// Every element multiplied by `factor` (not differentiable; see `scaled(_:)` ops for that).
    public func scaled(by factor: Float) -> Tensor {
        if isSymbolicZero { return self }
        return Tensor(shape: shape) { out in
            scalars.withUnsafeBufferPointer { a in
                for i in 0..<out.count { out[i] = a[i] * factor }
            }
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        if isSymbolicZero { return "Tensor.zero" }
        let shown = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(scalars.count > 8 ? ", …" : "")])"
    }
}
