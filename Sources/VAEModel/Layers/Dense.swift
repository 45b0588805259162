import _Differentiation
import TensorCore

/// A fully connected layer, PyTorch's `nn.Linear`: y = x·Wᵀ + b.
/// Legend: B batch, I input features, O output features.
public struct Dense: Differentiable, AdditiveArithmetic, ParameterWalking {
    public var weight: Tensor  // (O, I)
    public var bias: Tensor    // (O)

    /// A layer with the given parameters. (Also how the synthesized `zero`
    /// builds the symbolic-zero layer, so no shape checks here: `linear` checks.)
    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// PyTorch's default `nn.Linear` initialisation: weight and bias uniform in
    /// ±1/√I (kaiming_uniform with a = √5 reduces to this bound), drawn from
    /// `stream` (weight first, then bias).
    public init(inputSize: Int, outputSize: Int, stream: RandomStream) {
        let bound = 1 / Float(inputSize).squareRoot()
        let weightCount = inputSize * outputSize
        weight = Tensor(uniformFrom: stream, shape: [outputSize, inputSize], low: -bound, high: bound)
        bias = Tensor(uniformFrom: stream, shape: [outputSize], low: -bound, high: bound,
                      offset: weightCount)
    }

    /// x (B, I) → (B, O).
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func callAsFunction(_ x: Tensor, on backend: Backend) -> Tensor {
        linear(x, weight: weight, bias: bias, on: backend)
    }

    /// relu(x·Wᵀ + b), fused: x (B, I) → (B, O).
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func relu(_ x: Tensor, on backend: Backend) -> Tensor {
        linearReLU(x, weight: weight, bias: bias, on: backend)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }

    public var inputSize: Int { weight.shape[1] }
    public var outputSize: Int { weight.shape[0] }
}
