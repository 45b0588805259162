import _Differentiation
import TensorCore

/// A model (or a model's gradient: the tangent of every model here is the
/// model type itself) whose parameters can be visited in one fixed order.
///
/// The walk is hand-written per type, never reflected: it fixes the order of
/// the flat buffers that the optimizer, the gradient allreduce, checkpoints and
/// initialisation share, and it gives each tensor its PyTorch name.
///
/// A walk always visits the same fields in the same order. A head that the
/// configuration does not use (the learned-variance head of a Bernoulli model)
/// holds zero-element tensors: they take no room in flat buffers and are left
/// out of checkpoints.
public protocol ParameterWalking {
    /// Calls `visit` with each parameter's PyTorch name and storage, in order.
    mutating func walkParameters(_ visit: (String, inout Tensor) throws -> Void) rethrows
}

extension ParameterWalking {
    /// Names and values of all parameters, in walk order (zero-element heads included).
    public var namedParameters: [(name: String, tensor: Tensor)] {
        var copy = self
        var out: [(name: String, tensor: Tensor)] = []
        copy.walkParameters { name, tensor in out.append((name, tensor)) }
        return out
    }

    /// Where each parameter lives in a flat buffer.
    public var parameterLayout: ParameterLayout {
        ParameterLayout(namedParameters.map { ($0.name, $0.tensor.shape) })
    }
}

/// Names, shapes and flat-buffer offsets of a model's parameters, in walk order.
public struct ParameterLayout: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }

        /// The flat indices of `range` this entry holds (empty if none).
        func part(of range: Range<Int>) -> Range<Int> {
            let lower = Swift.max(range.lowerBound, offset), upper = Swift.min(range.upperBound, offset + count)
            return lower < upper ? lower ..< upper : lower ..< lower
        }
    }

    public let entries: [Entry]
    /// Total number of scalars.
    public let count: Int

    public init(_ namedShapes: [(String, [Int])]) {
        var entries: [Entry] = []
        var offset = 0
        for (name, shape) in namedShapes {
            entries.append(Entry(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        self.entries = entries
        self.count = offset
    }

    /// Entries that hold at least one scalar (what checkpoints store).
    public var nonEmptyEntries: [Entry] { entries.filter { $0.count > 0 } }
}

extension ParameterWalking {
    /// Copies every parameter into `buffer` (at least `layout.count` scalars),
    /// in walk order, and returns whether every value was finite. A
    /// symbolic-zero tensor (a gradient that autodiff found to be zero) is
    /// written as zeros of the layout's size.
    @discardableResult
    public func flatten(into buffer: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout) -> Bool {
        precondition(buffer.count >= layout.count, "flat buffer too small")
        var copy = self
        var index = 0
        var finite = true
        copy.walkParameters { name, tensor in
            let entry = layout.entries[index]
            // A gradient's walk may name a head with its `ConstantName` zero ("fc4_.weight"): match by order and shape.
            precondition(entry.name == name || name.contains("_."), "parameter walk does not match its layout")
            let dst = buffer.baseAddress! + entry.offset
            if tensor.isSymbolicZero {
                dst.initialize(repeating: 0, count: entry.count)
            } else {
                precondition(tensor.shape == entry.shape,
                             "\(name): shape \(tensor.shape), layout expects \(entry.shape)")
                tensor.scalars.withUnsafeBufferPointer { src in
                    if let base = src.baseAddress {
                        finite = copyCheckingFinite(from: base, to: dst, count: entry.count) && finite
                    }
                }
            }
            index += 1
        }
        return finite
    }

    /// The parameters as one flat array, in walk order.
    public func flattened(layout: ParameterLayout) -> [Float] {
        [Float](unsafeUninitializedCapacity: layout.count) { buffer, initialized in
            flatten(into: buffer, layout: layout)
            initialized = layout.count
        }
    }

    /// Overwrites every parameter's storage in place from a flat buffer laid
    /// out by `layout` (no new allocations: the storage of parameters is
    /// reused step after step).
    public mutating func copy(from buffer: UnsafeBufferPointer<Float>, layout: ParameterLayout) {
        precondition(buffer.count >= layout.count, "flat buffer too small")
        var index = 0
        walkParameters { name, tensor in
            let entry = layout.entries[index]
            precondition(entry.name == name && tensor.shape == entry.shape, "parameter walk does not match its layout")
            tensor.scalars.withUnsafeMutableBufferPointer { p in
                if let base = p.baseAddress { base.update(from: buffer.baseAddress! + entry.offset, count: entry.count) }
            }
            index += 1
        }
    }

    /// Calls `body` once for each parameter that holds part of the flat range
    /// `range` (walk order), with that part: the parameter's storage at its
    /// first element, the part's flat index and its length. The storage is
    /// written in place (no new allocations).
    public mutating func withFlatRange(_ range: Range<Int>, layout: ParameterLayout,
                                       _ body: (UnsafeMutablePointer<Float>, Int, Int) -> Void) {
        var index = 0
        walkParameters { _, tensor in
            let entry = layout.entries[index]
            index += 1
            let part = entry.part(of: range)
            guard !part.isEmpty else { return }
            precondition(tensor.count == entry.count, "parameter walk does not match its layout")
            tensor.scalars.withUnsafeMutableBufferPointer { p in
                body(p.baseAddress! + (part.lowerBound - entry.offset), part.lowerBound, part.count)
            }
        }
    }

    /// Overwrites the flat range `range` of the parameters from `source`
    /// (indexed by flat position), in place.
    public mutating func copy(range: Range<Int>, from source: UnsafePointer<Float>, layout: ParameterLayout) {
        withFlatRange(range, layout: layout) { p, start, count in p.update(from: source + start, count: count) }
    }

    /// Overwrites every parameter from a flat buffer laid out by `layout`.
    public mutating func assign(from buffer: UnsafeBufferPointer<Float>, layout: ParameterLayout) {
        precondition(buffer.count >= layout.count, "flat buffer too small")
        var index = 0
        walkParameters { name, tensor in
            let entry = layout.entries[index]
            precondition(entry.name == name, "parameter walk does not match its layout")
            tensor = Tensor(shape: entry.shape,
                            scalars: Array(buffer[entry.offset ..< entry.offset + entry.count]))
            index += 1
        }
    }
}

/// A name stored in a model, such as the checkpoint name of a likelihood's
/// auxiliary head: a constant of the architecture, not a parameter. Like
/// `ImageShape`, it is a trivial vector so that a model's tangent can be the
/// model type itself: `zero` is the empty name and `+` keeps the non-empty
/// operand, so a gradient's name is always `zero` and optimizer steps leave
/// a model's name unchanged.
public struct ConstantName: Differentiable, AdditiveArithmetic, Equatable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public typealias TangentVector = ConstantName
    public var value: String

    public init(_ value: String) { self.value = value }
    public init(stringLiteral value: String) { self.value = value }

    public var description: String { value }
    public static var zero: ConstantName { ConstantName("") }

    public static func + (lhs: ConstantName, rhs: ConstantName) -> ConstantName {
        if lhs.value.isEmpty { return rhs }
        precondition(rhs.value.isEmpty || rhs == lhs, "names \(lhs) and \(rhs) differ")
        return lhs
    }

    public static func - (lhs: ConstantName, rhs: ConstantName) -> ConstantName { lhs + rhs }

    public mutating func move(by offset: ConstantName) { self = self + offset }
}
