import _Differentiation
import TensorCore

/// The activation between an MLP's layers: a constant of the architecture.
public enum Activation: String, Codable, CaseIterable, Sendable {
    case relu
    case tanh
}

extension Dense {
    /// activation(x·Wᵀ + b) (ReLU fused into the matmul), with the pullback to
    /// the layer and the input.
    func activatedWithPullback(_ x: Tensor, _ activation: Activation, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> (Dense, Tensor)) {
        switch activation {
        case .relu: return valueWithPullback(at: self, x) { layer, x in layer.relu(x, on: backend) }
        case .tanh: return valueWithPullback(at: self, x) { layer, x in tanh(layer(x, on: backend)) }
        }
    }
}

/// Any number of dense layers, each followed by the activation, applied in
/// turn (an MLP's hidden layers past the first); layer i is walked as
/// "\(i + 1).weight" (the owner adds its prefix). Like `ConvStages`: its own
/// tangent, the zero tangent holding no layers, and a hand-written
/// derivative looping over the layers' pullbacks.
public struct DenseStages: Differentiable, AdditiveArithmetic, ParameterWalking {
    public typealias TangentVector = DenseStages
    public var layers: [Dense]

    public init(_ layers: [Dense]) { self.layers = layers }

    public var count: Int { layers.count }

    public static var zero: DenseStages { DenseStages([]) }

    public static func + (lhs: DenseStages, rhs: DenseStages) -> DenseStages {
        if lhs.layers.isEmpty { return rhs }
        if rhs.layers.isEmpty { return lhs }
        precondition(lhs.count == rhs.count, "adding \(lhs.count) layers to \(rhs.count)")
        return DenseStages(zip(lhs.layers, rhs.layers).map { $0 + $1 })
    }

    public static func - (lhs: DenseStages, rhs: DenseStages) -> DenseStages {
        if rhs.layers.isEmpty { return lhs }
        let left = lhs.layers.isEmpty ? [Dense](repeating: .zero, count: rhs.count) : lhs.layers
        precondition(left.count == rhs.count, "subtracting \(rhs.count) layers from \(left.count)")
        return DenseStages(zip(left, rhs.layers).map { $0 - $1 })
    }

    public mutating func move(by offset: DenseStages) {
        if offset.layers.isEmpty { return }
        precondition(offset.count == count, "moving \(count) layers by \(offset.count)")
        for i in layers.indices { layers[i].move(by: offset.layers[i]) }
    }

    /// The layers applied in turn, each followed by `activation`.
    @differentiable(reverse, wrt: (self, x))
    public func callAsFunction(_ x: Tensor, activation: Activation, on backend: Backend) -> Tensor {
        var h = x
        for layer in layers { h = layer.activatedWithPullback(h, activation, on: backend).value }
        return h
    }

    @derivative(of: callAsFunction, wrt: (self, x))
    @usableFromInline
    func _vjpCall(_ x: Tensor, activation: Activation, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> (DenseStages, Tensor)) {
        var h = x
        var pullbacks: [(Tensor) -> (Dense, Tensor)] = []
        pullbacks.reserveCapacity(count)
        for layer in layers {
            let (y, pullback) = layer.activatedWithPullback(h, activation, on: backend)
            pullbacks.append(pullback)
            h = y
        }
        let n = count
        return (h, { dy in
            var gradients = [Dense](repeating: .zero, count: n)
            var g = dy
            for i in stride(from: n - 1, through: 0, by: -1) { (gradients[i], g) = pullbacks[i](g) }
            return (DenseStages(gradients), g)
        })
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        for i in layers.indices { try layers[i].walkParameters { try visit("\(i + 1)." + $0, &$1) } }
    }
}

