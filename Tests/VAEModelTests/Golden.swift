import Foundation
import XCTest
import TensorCore
@testable import VAEModel

/// A PyTorch golden file from `Fixtures/` (copied from shared/golden; made by
/// make_golden.py in float64 from float32-exact inputs).
struct Golden {
    let json: [String: Any]

    init(_ name: String) throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
        json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    static func tensor(_ entry: Any?) throws -> Tensor {
        let e = try XCTUnwrap(entry as? [String: Any])
        let shape = try XCTUnwrap(e["shape"] as? [Int])
        let data = try XCTUnwrap(e["data"] as? [Double])
        return Tensor(shape: shape, scalars: data.map { Float($0) })
    }

    func tensor(_ key: String) throws -> Tensor { try Self.tensor(json[key]) }
    func number(_ key: String) throws -> Double { try XCTUnwrap(json[key] as? Double) }
    func tensors(_ key: String) throws -> [String: Tensor] {
        try XCTUnwrap(json[key] as? [String: Any]).mapValues { try Self.tensor($0) }
    }
}

/// Float32 against float64 references: |a − e| ≤ atol + rtol·|e|. The golden
/// README asks for ~1e-4 relative, with an absolute floor for small values.
func assertClose(_ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5,
                 _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let a = actual.materialized(shape: expected.shape)
    XCTAssertEqual(a.shape, expected.shape, "\(label): shape", file: file, line: line)
    guard a.shape == expected.shape else { return }
    for i in 0..<a.count {
        let (x, e) = (a.scalars[i], expected.scalars[i])
        XCTAssertLessThanOrEqual(abs(x - e), atol + rtol * abs(e),
                                 "\(label)[\(i)]: \(x) vs PyTorch \(e)", file: file, line: line)
    }
}

func assertClose(_ actual: Float, _ expected: Double, rtol: Double = 1e-5,
                 _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertLessThanOrEqual(abs(Double(actual) - expected), rtol * abs(expected),
                             "\(label): \(actual) vs PyTorch \(expected)", file: file, line: line)
}

extension ParameterWalking {
    /// Sets every parameter from a name → tensor table (PyTorch names);
    /// zero-element heads must be absent from the table.
    mutating func load(_ table: [String: Tensor]) {
        var seen = 0
        walkParameters { name, tensor in
            if tensor.count == 0 { XCTAssertNil(table[name]); return }
            guard let value = table[name] else { XCTFail("golden file lacks \(name)"); return }
            XCTAssertEqual(value.shape, tensor.shape, name)
            tensor = value
            seen += 1
        }
        XCTAssertEqual(seen, table.count, "every golden parameter is used")
    }
}

/// A gradient's tensors under its model's parameter names (a gradient walks
/// in the same order, but its constant names, such as a likelihood head's,
/// are the empty `ConstantName.zero`).
/// The gradient's tensors by the model's parameter names; parameters with
/// no elements (unused heads: the zero fill of missing values) left out.
func gradientsByName<Model: ParameterWalking>(_ gradient: Model, of model: Model) -> [(name: String, tensor: Tensor)] {
    let parameters = model.namedParameters, gradients = gradient.namedParameters
    return parameters.indices.filter { parameters[$0].tensor.count > 0 }.map { (parameters[$0].name, gradients[$0].tensor) }
}
