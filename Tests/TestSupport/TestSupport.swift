import _Differentiation
import XCTest
import Foundation
import TensorCore

/// The backend the tests run kernels on: OpenBLAS, no profiler.
public let cpu = try! Backend()

/// Deterministic test inputs: uniforms in (low, high) from a fixed stream.
public func randomTensor(_ shape: [Int], low: Float = -1, high: Float = 1, seed: UInt32 = 0) -> Tensor {
    Tensor(uniformFrom: RandomStream(seed: 99, domain: .sampling, seed, 7), shape: shape, low: low, high: high)
}

/// Central finite differences of a scalar function, element by element:
/// (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h. No autodiff involved.
public func finiteDifferenceGradient(of f: (Tensor) -> Float, at x: Tensor, h: Float = 1e-2) -> Tensor {
    var out = Tensor(zeros: x.shape)
    for i in 0..<x.count {
        var plus = x, minus = x
        plus.scalars[i] += h
        minus.scalars[i] -= h
        out.scalars[i] = (f(plus) - f(minus)) / (2 * h)
    }
    return out
}

/// Compares a gradient (from any VJP) with central finite differences of
/// `f` at `x`, element by element.
///
/// Tolerance: the functions are evaluated in Float32, so a central difference
/// with step h has rounding error ≈ ε·|f|/h (ε = 6e-8) plus truncation error
/// O(h²·f‴). With h = 1e-2 and |f| ≲ 10² that is ≲ 1e-3 absolute; we accept
/// |analytic − numeric| ≤ atol + rtol·|numeric| with atol = 2e-3, rtol = 1e-2.
public func assertMatchesFiniteDifferences(
    _ analytic: Tensor, of f: (Tensor) -> Float, at x: Tensor, h: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 1e-2,
    _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    let analytic = analytic.materialized(shape: x.shape)
    XCTAssertEqual(analytic.shape, x.shape, "\(label): gradient shape", file: file, line: line)
    let numeric = finiteDifferenceGradient(of: f, at: x, h: h)
    for i in 0..<x.count {
        let error = abs(analytic.scalars[i] - numeric.scalars[i])
        XCTAssertLessThanOrEqual(error, atol + rtol * abs(numeric.scalars[i]),
            "\(label): element \(i): autodiff \(analytic.scalars[i]) vs finite difference \(numeric.scalars[i])",
            file: file, line: line)
    }
}

/// Compares autodiff's gradient of a scalar function with central finite
/// differences (see `assertMatchesFiniteDifferences` for the tolerance).
public func assertGradientMatchesFiniteDifferences(
    of f: @differentiable(reverse) (Tensor) -> Float,
    at x: Tensor, h: Float = 1e-2, atol: Float = 2e-3, rtol: Float = 1e-2,
    _ label: String, file: StaticString = #filePath, line: UInt = #line
) {
    assertMatchesFiniteDifferences(gradient(at: x, of: f), of: { f($0) }, at: x, h: h, atol: atol, rtol: rtol, label,
                                   file: file, line: line)
}

/// A fresh, empty temporary directory.
public func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "vae-mpi-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A fresh, empty temporary directory, removed when `test` ends.
public func temporaryDirectory(removedAfter test: XCTestCase) throws -> String {
    let path = try temporaryDirectory()
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}
