import _Differentiation

// Joining a tensor with a constant one beside it: the conditional VAE's
// label, next to the flattened image, the latent code, or (broadcast over
// the pixels) the channels of a channels-last image.

/// [a, b] along the last dimension: a (R, A) and b (R, K) → (R, A + K), for
/// any leading dimensions R (a channels-last image (B, H, W, C) joins a
/// (B, H, W, K) tensor as extra channels). Differentiable in `a` only: `b`
/// is a constant (a condition). With K = 0 this is `a` itself.
@differentiable(reverse, wrt: a)
public func concatenatingLastDimension(_ a: Tensor, _ b: Tensor) -> Tensor {
    concatenateLastDimension(a, b)
}

@derivative(of: concatenatingLastDimension, wrt: a)
@usableFromInline
func _vjpConcatenatingLastDimension(_ a: Tensor, _ b: Tensor) -> (value: Tensor, pullback: (Tensor) -> Tensor) {
    let aShape = a.shape
    let k = b.shape.last ?? 0
    return (concatenateLastDimension(a, b), { dy in
        if dy.isSymbolicZero { return .zero }
        if k == 0 { return dy }
        let width = aShape[aShape.count - 1]
        let rows = dy.count / (width + k)
        return Tensor(shape: aShape) { out in
            dy.scalars.withUnsafeBufferPointer { g in
                for r in 0..<rows where width > 0 {
                    (out.baseAddress! + r * width).update(from: g.baseAddress! + r * (width + k), count: width)
                }
            }
        }
    })
}

func concatenateLastDimension(_ a: Tensor, _ b: Tensor) -> Tensor {
    let k = b.shape.last ?? 0
    if k == 0 { return a }
    precondition(a.rank >= 1 && a.shape.dropLast() == b.shape.dropLast(),
                 "cannot join shapes \(a.shape) and \(b.shape) along the last dimension")
    let width = a.shape[a.rank - 1]
    let rows = b.count / k
    return Tensor(shape: Array(a.shape.dropLast()) + [width + k]) { out in
        a.scalars.withUnsafeBufferPointer { x in
            b.scalars.withUnsafeBufferPointer { c in
                for r in 0..<rows {
                    let o = out.baseAddress! + r * (width + k)
                    if width > 0 { o.update(from: x.baseAddress! + r * width, count: width) }
                    (o + width).update(from: c.baseAddress! + r * k, count: k)
                }
            }
        }
    }
}

extension Tensor {
    /// (B, K) one-hot rows: row i has a 1 in column `labels[i]`. K = 0 gives
    /// (B, 0), the empty condition of an unconditional model.
    public init(oneHot labels: [Int32], classes k: Int) {
        precondition(k >= 0 && labels.allSatisfy { k == 0 || (0..<Int32(k)).contains($0) },
                     "labels must lie in 0..<\(k)")
        self.init(shape: [labels.count, k]) { out in
            out.initialize(repeating: 0)
            if k > 0 { for (i, label) in labels.enumerated() { out[i * k + Int(label)] = 1 } }
        }
    }

    /// Each row of this (B, K) tensor repeated `times` times: (B, times, K)
    /// flattened to (B·times, K) rows, e.g. a condition broadcast over the
    /// H·W pixels of a channels-last image. Not differentiable (conditions are constants).
    public func repeatingRows(_ times: Int) -> Tensor {
        precondition(rank == 2, "repeatingRows of shape \(shape)")
        let (b, k) = (shape[0], shape[1])
        return Tensor(shape: [b * times, k]) { out in
            scalars.withUnsafeBufferPointer { src in
                for i in 0..<b {
                    for t in 0..<times where k > 0 {
                        (out.baseAddress! + (i * times + t) * k).update(from: src.baseAddress! + i * k, count: k)
                    }
                }
            }
        }
    }
}
