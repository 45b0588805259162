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

    /// The layer on a flattened channels-last image (B, P·C) whose features
    /// PyTorch flattens channels first (C·P): its weight's columns are put in
    /// the image's order (`channelsLastColumns`) instead of the image in the
    /// weight's.
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func callAsFunction(channelsLast x: Tensor, channels: Int, on backend: Backend) -> Tensor {
        linear(x, weight: channelsLastColumns(weight, channels: channels, on: backend), bias: bias, on: backend)
    }

    /// relu(x·Wᵀ + b) with outputs (B, P·C) in channels-last order, for a
    /// layer whose C·P outputs PyTorch orders channels first: the weight's
    /// rows and the bias are put in that order (`channelsLastRows`).
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func reluChannelsLast(_ x: Tensor, channels: Int, on backend: Backend) -> Tensor {
        linearReLU(x, weight: channelsLastRows(weight, channels: channels, on: backend),
                   bias: channelsLastRows(bias, channels: channels, on: backend), on: backend)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }

    public var inputSize: Int { weight.shape[1] }
    public var outputSize: Int { weight.shape[0] }
}
