import _Differentiation

/// Channels × height × width of one image (NCHW without the N).
///
/// Convolutional models keep their input shape in the model struct, a
/// constant of the architecture that must not stop the model's tangent from
/// being the model type itself. So the shape is also a (trivial) vector:
/// `zero` is 0×0×0 and `+` keeps the non-zero operand; a gradient's shape is
/// always `zero`, so optimizer steps leave a model's shape unchanged.
public struct ImageShape: Differentiable, AdditiveArithmetic, Equatable, Codable, Sendable, CustomStringConvertible {
    public typealias TangentVector = ImageShape
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// C·H·W, the number of dimensions of one sample.
    public var size: Int { channels * height * width }
    public var description: String { "\(channels)×\(height)×\(width)" }

    public static var zero: ImageShape { ImageShape(channels: 0, height: 0, width: 0) }

    public static func + (lhs: ImageShape, rhs: ImageShape) -> ImageShape {
        if lhs == .zero { return rhs }
        precondition(rhs == .zero || rhs == lhs, "image shapes \(lhs) and \(rhs) differ")
        return lhs
    }

    public static func - (lhs: ImageShape, rhs: ImageShape) -> ImageShape { lhs + rhs }

    public mutating func move(by offset: ImageShape) { self = self + offset }
}

/// The product of sizes read from a file, or nil when it overflows Int (or
/// a size is negative): every element count that comes from a file goes
/// through this before memory is reserved or offsets are computed.
public func checkedProduct(_ values: [Int]) -> Int? {
    var product = 1
    for v in values {
        guard v >= 0 else { return nil }
        let (p, overflow) = product.multipliedReportingOverflow(by: v)
        if overflow { return nil }
        product = p
    }
    return product
}

/// a + b·c for sizes read from a file, or nil on overflow.
public func checkedOffset(_ a: Int, plus b: Int, times c: Int) -> Int? {
    let (bc, o1) = b.multipliedReportingOverflow(by: c)
    let (sum, o2) = a.addingReportingOverflow(bc)
    return o1 || o2 ? nil : sum
}
