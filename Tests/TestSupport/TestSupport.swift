import _Differentiation
import XCTest
import Foundation
import TensorCore

/// Deterministic test inputs: uniforms in (low, high) from a fixed stream.
public func randomTensor(_ shape: [Int], low: Float = -1, high: Float = 1, seed: UInt32 = 0) -> Tensor {
    Tensor(uniformFrom: RandomStream(seed: 99, domain: .sampling, seed, 7), shape: shape, low: low, high: high)
}

/// Compares autodiff's gradient of a scalar function with central finite
/// differences, element by element.
///
/// Tolerance: the functions are evaluated in Float32, so a central difference
/// with step h has rounding error ≈ ε·|f|/h (ε = 6e-8) plus truncation error
/// O(h²·f'''). With h = 1e-2 and |f| ≲ 10² that is ≲ 1e-3 absolute; we accept
/// |analytic − numeric| ≤ atol + rtol·|numeric| with atol = 2e-3, rtol = 1e-2.
public func assertGradientMatchesFiniteDifferences(
    of f: @differentiable(reverse) (Tensor) -> Float,
    at x: Tensor, h: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 1e-2,
    _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    let analytic = gradient(at: x, of: f).materialized(shape: x.shape)
    XCTAssertEqual(analytic.shape, x.shape, "\(label): gradient shape", file: file, line: line)
    var worst: Float = 0
    for i in 0..<x.count {
        var plus = x, minus = x
        plus.scalars[i] += h
        minus.scalars[i] -= h
        let numeric = (f(plus) - f(minus)) / (2 * h)
        let error = abs(analytic.scalars[i] - numeric)
        worst = max(worst, error)
        XCTAssertLessThanOrEqual(error, atol + rtol * abs(numeric),
            "\(label): element \(i): autodiff \(analytic.scalars[i]) vs finite difference \(numeric)",
            file: file, line: line)
    }
}

/// A fresh, empty temporary directory.
public func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "vae-mpi-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
