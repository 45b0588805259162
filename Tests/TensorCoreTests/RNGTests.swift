import XCTest
@testable import TensorCore

final class RNGTests: XCTestCase {
    /// Known-answer vectors of Philox4x32-10 from Random123's kat_vectors.
    func testPhiloxKnownAnswers() {
        XCTAssertEqual(Philox.block(SIMD4(0, 0, 0, 0), key: SIMD2(0, 0)),
                       SIMD4(0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8))
        XCTAssertEqual(Philox.block(SIMD4(repeating: 0xFFFF_FFFF), key: SIMD2(repeating: 0xFFFF_FFFF)),
                       SIMD4(0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD))
        XCTAssertEqual(Philox.block(SIMD4(0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344),
                                    key: SIMD2(0xA409_3822, 0x299F_31D0)),
                       SIMD4(0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1))
    }

    /// The C blocks (16 at a time with AVX-512) against `Philox.block`, word
    /// for word: across the 1,024-block chunks, at unaligned offsets, and by
    /// random access.
    func testVectorisedBlocksAndRandomAccessMatchTheScalarCipher() {
        let stream = RandomStream(seed: 0x0123_4567_89AB_CDEF, domain: .inputDropout, 77, 0xFFFF_FFFF)
        func scalar(_ word: Int) -> UInt32 { stream.block(UInt32(word / 4))[word % 4] }
        for (count, offset) in [(0, 0), (1, 0), (3, 5), (64, 0), (65, 3), (4096, 0), (4097, 1), (9000, 4094), (50, 4 * 4095 - 2)] {
            let words = stream.words(count: count, offset: offset)
            XCTAssertEqual(words, (0..<count).map { scalar(offset + $0) }, "\(count) words from \(offset)")
        }
        var generator = SystemRandomNumberGenerator()
        var indices: [Int64] = (0..<1000).map { _ in Int64.random(in: 0 ..< 1 << 20, using: &generator) }
        indices += [0, 1, 2, 3, 4 * Int64(UInt32.max) - 1]
        var out = [UInt32](repeating: 0, count: indices.count)
        indices.withUnsafeBufferPointer { stream.words(at: $0, into: &out) }
        XCTAssertEqual(out, indices.map { scalar(Int($0)) })
        XCTAssertEqual(out.prefix(3).map { RandomStream.openUnit($0) }, indices.prefix(3).map { stream.uniform(at: Int($0)) })
    }

    func testStreamsAreDeterministicAndSliceable() {
        let s = RandomStream(seed: 42, domain: .trainingNoise, 3, 17)
        let all = s.normals(count: 100)
        XCTAssertEqual(all, s.normals(count: 100))
        XCTAssertEqual(Array(all[37..<60]), s.normals(count: 23, offset: 37))
        XCTAssertEqual(Array(s.words(count: 10)[3..<10]), s.words(count: 7, offset: 3))
        // Other coordinates give other numbers.
        XCTAssertNotEqual(all, RandomStream(seed: 42, domain: .trainingNoise, 3, 18).normals(count: 100))
        XCTAssertNotEqual(all, RandomStream(seed: 43, domain: .trainingNoise, 3, 17).normals(count: 100))
        XCTAssertNotEqual(all, RandomStream(seed: 42, domain: .evaluationNoise, 3, 17).normals(count: 100))
    }

    func testDistributions() {
        let n = 200_000
        let z = RandomStream(seed: 1, domain: .sampling).normals(count: n).map(Double.init)
        let mean = z.reduce(0, +) / Double(n)
        let variance = z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.01)      // 4.5 standard errors
        XCTAssertEqual(variance, 1, accuracy: 0.015)
        let u = RandomStream(seed: 1, domain: .sampling, 1).uniforms(count: n)
        XCTAssertTrue(u.allSatisfy { $0 > 0 && $0 < 1 })
        XCTAssertEqual(Double(u.reduce(0, +)) / Double(n), 0.5, accuracy: 0.003)
    }

    func testPermutation() {
        for n in [0, 1, 2, 10, 1000] {
            let p = RandomStream(seed: 7, domain: .dataPermutation).permutation(n)
            XCTAssertEqual(p.sorted(), Array(0..<n))
        }
        let a = RandomStream(seed: 7, domain: .dataPermutation).permutation(1000)
        XCTAssertEqual(a, RandomStream(seed: 7, domain: .dataPermutation).permutation(1000))
        XCTAssertNotEqual(a, RandomStream(seed: 8, domain: .dataPermutation).permutation(1000))
        // Position 0 is uniform over values: a coarse check over many seeds.
        var counts = [Int](repeating: 0, count: 4)
        for seed in 0..<4000 { counts[RandomStream(seed: UInt64(seed), domain: .dataPermutation).permutation(4)[0]] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 1000, accuracy: 150) }
    }
}
