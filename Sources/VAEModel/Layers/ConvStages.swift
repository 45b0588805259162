import _Differentiation
import TensorCore

/// One stride-2 stage of a conv VAE: relu(layer(x)) on channels-last images,
/// with its value and pullback (to the parameters, and to the parameters and
/// the input).
public protocol ConvStage: Differentiable, AdditiveArithmetic, ParameterWalking where TangentVector == Self {
    func stageWithPullback(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> (Self, Tensor))
    func stageWithParameterPullback(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> Self)
}

extension Conv2D: ConvStage {
    /// relu(conv(x, stride 2, padding 1)): (B, H, W, C) → (B, H/2, W/2, O).
    public func stageWithPullback(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> (Conv2D, Tensor)) {
        valueWithPullback(at: self, x) { layer, x in layer.relu(x, stride: 2, padding: 1, on: backend) }
    }

    public func stageWithParameterPullback(_ x: Tensor, on backend: Backend) -> (value: Tensor, pullback: (Tensor) -> Conv2D) {
        valueWithPullback(at: self) { layer in layer.relu(x, stride: 2, padding: 1, on: backend) }
    }
}

extension ConvTranspose2D: ConvStage {
    /// relu(convTranspose(x, stride 2, padding 1, output padding 1)):
    /// (B, H, W, C) → (B, 2H, 2W, O).
    public func stageWithPullback(_ x: Tensor, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> (ConvTranspose2D, Tensor)) {
        valueWithPullback(at: self, x) { layer, x in layer.relu(x, stride: 2, padding: 1, outputPadding: 1, on: backend) }
    }

    public func stageWithParameterPullback(_ x: Tensor, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> ConvTranspose2D) {
        valueWithPullback(at: self) { layer in layer.relu(x, stride: 2, padding: 1, outputPadding: 1, on: backend) }
    }
}

/// Any number of stages applied in turn, stage i's parameters walked as
/// "\(i + 1).weight", "\(i + 1).bias" (the owner adds its prefix: `enc.conv`).
///
/// Its own tangent, like every model here. The zero tangent holds no stages
/// and stands for zeros of whatever depth is needed: `+` and `move(by:)`
/// accept it. The pass through the stages has a hand-written derivative, a
/// loop over the stages' own pullbacks, so the depth is a value, not a type.
public struct ConvStages<Stage: ConvStage>: Differentiable, AdditiveArithmetic, ParameterWalking {
    public typealias TangentVector = ConvStages
    public var stages: [Stage]

    public init(_ stages: [Stage]) {
        self.stages = stages
    }

    public var count: Int { stages.count }

    public static var zero: ConvStages { ConvStages([]) }

    public static func + (lhs: ConvStages, rhs: ConvStages) -> ConvStages {
        if lhs.stages.isEmpty { return rhs }
        if rhs.stages.isEmpty { return lhs }
        precondition(lhs.count == rhs.count, "adding \(lhs.count) stages to \(rhs.count)")
        return ConvStages(zip(lhs.stages, rhs.stages).map { $0 + $1 })
    }

    public static func - (lhs: ConvStages, rhs: ConvStages) -> ConvStages {
        if rhs.stages.isEmpty { return lhs }
        let left = lhs.stages.isEmpty ? [Stage](repeating: .zero, count: rhs.count) : lhs.stages
        precondition(left.count == rhs.count, "subtracting \(rhs.count) stages from \(left.count)")
        return ConvStages(zip(left, rhs.stages).map { $0 - $1 })
    }

    public mutating func move(by offset: ConvStages) {
        if offset.stages.isEmpty { return }
        precondition(offset.count == count, "moving \(count) stages by \(offset.count)")
        for i in stages.indices { stages[i].move(by: offset.stages[i]) }
    }

    /// The stages applied in turn (see `ConvStage`).
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func callAsFunction(_ x: Tensor, on backend: Backend) -> Tensor {
        var h = x
        for stage in stages { h = stage.stageWithParameterPullback(h, on: backend).value }
        return h
    }

    @derivative(of: callAsFunction)
    @usableFromInline
    func _vjpCall(_ x: Tensor, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> (ConvStages, Tensor)) {
        var h = x
        var pullbacks: [(Tensor) -> (Stage, Tensor)] = []
        pullbacks.reserveCapacity(count)
        for stage in stages {
            let (y, pullback) = stage.stageWithPullback(h, on: backend)
            pullbacks.append(pullback)
            h = y
        }
        let n = count
        return (h, { dy in
            var gradients = [Stage](repeating: .zero, count: n)
            var g = dy
            for i in stride(from: n - 1, through: 0, by: -1) {
                (gradients[i], g) = pullbacks[i](g)
            }
            return (ConvStages(gradients), g)
        })
    }

    /// The input is data: the first stage computes no input gradient.
    @derivative(of: callAsFunction, wrt: self)
    @usableFromInline
    func _vjpCallParameters(_ x: Tensor, on backend: Backend)
        -> (value: Tensor, pullback: (Tensor) -> ConvStages) {
        guard let first = stages.first else { return (x, { _ in .zero }) }
        let (h1, firstPullback) = first.stageWithParameterPullback(x, on: backend)
        let rest = ConvStages(Array(stages.dropFirst()))
        let (h, restPullback) = rest._vjpCall(h1, on: backend)
        return (h, { dy in
            let (restGradient, g1) = restPullback(dy)
            return ConvStages([firstPullback(g1)] + restGradient.stages)
        })
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        for i in stages.indices {
            try stages[i].walkParameters { try visit("\(i + 1)." + $0, &$1) }
        }
    }
}
