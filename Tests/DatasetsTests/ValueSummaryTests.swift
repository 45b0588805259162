import XCTest
@testable import Datasets

/// The one start-up pass over a set's values, and the checks that use it.
final class ValueSummaryTests: XCTestCase {
    func testOnePassFindsNaNInfinityAndTheRange() {
        let clean = SampleValues(floats: [0.5, -2, 3, 0])
        XCTAssertEqual(clean.summary, .init(hasNaN: false, hasInfinite: false, range: -2...3))
        XCTAssertEqual(clean.range, -2...3)
        let missing = SampleValues(floats: [.nan, 1, 2])
        XCTAssertEqual(missing.summary, .init(hasNaN: true, hasInfinite: false, range: 1...2))
        let infinite = SampleValues(floats: [1, -.infinity, .nan])
        XCTAssertEqual(infinite.summary, .init(hasNaN: true, hasInfinite: true, range: -Float.infinity...1))
        XCTAssertEqual(SampleValues(floats: [.nan]).summary, .init(hasNaN: true, hasInfinite: false, range: nil))
        XCTAssertEqual(SampleValues(bytes: [3, 250]).summary, .init(hasNaN: false, hasInfinite: false, range: 3...250))
    }

    func testTheMaskAndTheFiniteCheckFollowTheSummary() throws {
        // NaN is missing (masked), infinity is an error naming the sample; clean data passes.
        let withNaN = try ImageSet(dimensions: [2, 2], values: SampleValues(floats: [0, .nan, 1, 0]), levels: nil, path: "x.npy")
        XCTAssertEqual(withNaN.observed, [1, 0, 1, 1])
        XCTAssertNoThrow(try withNaN.validateFinite())
        let clean = try ImageSet(dimensions: [2, 2], values: SampleValues(floats: [0, 0.5, 1, 0]), levels: nil, path: "x.npy")
        XCTAssertNil(clean.observed)
        XCTAssertNoThrow(try clean.validateFinite())
        let infinite = try ImageSet(dimensions: [2, 2], values: SampleValues(floats: [0, 0, .infinity, 0]), levels: nil,
                                    path: "x.npy")
        XCTAssertThrowsError(try infinite.validateFinite()) { error in
            XCTAssertTrue("\(error)".contains("sample 1, element 0"), "\(error)")
        }
    }
}
