import CKernels

/// Where the parameter-gradient kernels write during a training step: each
/// parameter's slot in the trainer's flat reduction buffer, so gradients land
/// there directly instead of in tensors that are then copied (as PyTorch DDP's
/// gradient-as-bucket-view). A parameter is recognised by the address of its
/// storage, which the forward and backward passes share (tensors are
/// copy-on-write values; nothing writes the parameters during a step).
///
/// A kernel asks `slot(for:)`; the first write of a slot stores, later writes
/// (a parameter used twice) accumulate. Each write is checked for non-finite
/// values while it is still in cache. `complete(with:)` packs whatever the
/// pullback returned as tensors instead, and zeroes slots nothing wrote.
public final class GradientSink {
    /// The step's buffer (the shared-memory reduction alternates between two).
    public private(set) var buffer: UnsafeMutablePointer<Float>
    private var slots: [UnsafeRawPointer: Int] = [:]   // storage address → index in `entries`
    private var entries: [(offset: Int, count: Int)] = []
    private var written: [Bool] = []
    /// Whether any gradient written so far held an infinity or a NaN.
    public private(set) var nonFinite = false
    /// Whether writes are checked (`nonFinite`). The shared-memory step
    /// turns it off: it checks the summed gradient in its Adam pass instead,
    /// while each block is in L1, rather than every rank reading its whole
    /// gradient once more.
    public var checksFiniteness = true

    /// `buffer` holds at least the sum of the registered counts.
    public init(buffer: UnsafeMutablePointer<Float>) {
        self.buffer = buffer
    }

    /// Points the next steps' writes at `buffer` (between steps only).
    public func retarget(_ buffer: UnsafeMutablePointer<Float>) {
        self.buffer = buffer
    }

    /// Starts a step: parameter i (in walk order) owns `layout[i]` of the buffer.
    public func begin(parameters: [Tensor], offsets: [Int]) {
        precondition(parameters.count == offsets.count)
        slots.removeAll(keepingCapacity: true)
        entries = zip(parameters, offsets).map { ($0.1, $0.0.count) }
        written = [Bool](repeating: false, count: parameters.count)
        nonFinite = false
        for (i, p) in parameters.enumerated() where p.count > 0 {
            p.scalars.withUnsafeBytes { slots[UnsafeRawPointer($0.baseAddress!)] = i }
        }
    }

    /// The slot of `parameter`'s gradient, and whether it already holds a
    /// gradient (then add to it); nil if the parameter is not registered.
    public func slot(for parameter: Tensor) -> (pointer: UnsafeMutablePointer<Float>, accumulate: Bool)? {
        guard parameter.count > 0,
              let i = parameter.scalars.withUnsafeBytes({ slots[UnsafeRawPointer($0.baseAddress!)] }) else { return nil }
        let accumulate = written[i]
        written[i] = true
        return (buffer + entries[i].offset, accumulate)
    }

    /// Records the finiteness of a gradient just written at `pointer`.
    public func checkWritten(_ pointer: UnsafePointer<Float>, count: Int) {
        if checksFiniteness && ck_any_non_finite(pointer, count) != 0 { nonFinite = true }
    }

    /// Ends a step: copies gradients the pullback returned as tensors (in
    /// walk order; symbolic zeros are the ones written here or truly zero)
    /// and zeroes every slot nothing wrote.
    public func complete(with gradients: [Tensor]) {
        precondition(gradients.count == entries.count, "gradient walk does not match the registered parameters")
        for (i, g) in gradients.enumerated() {
            let (offset, count) = entries[i]
            let destination = buffer + offset
            if g.isSymbolicZero {
                if !written[i] { destination.initialize(repeating: 0, count: count) }
                continue
            }
            precondition(g.count == count, "gradient of parameter \(i) has \(g.count) elements, expected \(count)")
            g.scalars.withUnsafeBufferPointer { source in
                if written[i] {
                    for j in 0..<count { destination[j] += source[j] }
                } else if let base = source.baseAddress {
                    destination.update(from: base, count: count)
                }
            }
            written[i] = true
            checkWritten(destination, count: count)
        }
    }
}
