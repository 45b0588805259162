import _Differentiation
import TensorCore

/// PyTorch's `nn.Conv2d` parameters: weight (O, C, kh, kw), bias (O). Stride
/// and padding belong to the architecture and are passed at the call.
public struct Conv2D: Differentiable, AdditiveArithmetic, ParameterWalking {
    public var weight: Tensor  // (O, C, kh, kw)
    public var bias: Tensor    // (O)

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// PyTorch's default initialisation: uniform in ±1/√(C·kh·kw).
    public init(inputChannels c: Int, outputChannels o: Int, kernel k: Int, stream: RandomStream) {
        let bound = 1 / Float(c * k * k).squareRoot()
        weight = Tensor(uniformFrom: stream, shape: [o, c, k, k], low: -bound, high: bound)
        bias = Tensor(uniformFrom: stream, shape: [o], low: -bound, high: bound, offset: o * c * k * k)
    }

    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func callAsFunction(_ x: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, on: backend)
    }

    /// relu(conv(x)), fused.
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func relu(_ x: Tensor, stride: Int, padding: Int, on backend: Backend) -> Tensor {
        conv2dReLU(x, weight: weight, bias: bias, stride: stride, padding: padding, on: backend)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }
}

/// PyTorch's `nn.ConvTranspose2d` parameters: weight (C, O, kh, kw), bias (O).
public struct ConvTranspose2D: Differentiable, AdditiveArithmetic, ParameterWalking {
    public var weight: Tensor  // (C, O, kh, kw)
    public var bias: Tensor    // (O)

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    /// PyTorch's default initialisation: its fan-in for a transposed
    /// convolution is weight.size(1)·kh·kw = O·kh·kw.
    public init(inputChannels c: Int, outputChannels o: Int, kernel k: Int, stream: RandomStream) {
        let bound = 1 / Float(o * k * k).squareRoot()
        weight = Tensor(uniformFrom: stream, shape: [c, o, k, k], low: -bound, high: bound)
        bias = Tensor(uniformFrom: stream, shape: [o], low: -bound, high: bound, offset: c * o * k * k)
    }

    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func callAsFunction(_ x: Tensor, stride: Int, padding: Int, outputPadding: Int, on backend: Backend) -> Tensor {
        convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding,
                        on: backend)
    }

    /// relu(convTranspose(x)), fused.
    @differentiable(reverse)
    @differentiable(reverse, wrt: self)
    public func relu(_ x: Tensor, stride: Int, padding: Int, outputPadding: Int, on backend: Backend) -> Tensor {
        convTranspose2dReLU(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding,
                            on: backend)
    }

    public mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows {
        try visit("weight", &weight)
        try visit("bias", &bias)
    }
}
