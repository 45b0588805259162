import XCTest
@testable import TensorCore
import CKernels

/// The channels-last gather kernels against plain loops, bit for bit: the
/// shapes they are specialised for (1 or 3 channels, square kernels of 3, 4
/// and 5) and others, every stride and padding up to 3 and 2.
final class Im2colKernelTests: XCTestCase {
    struct Geometry: CustomStringConvertible {
        let batch, height, width, channels, kh, kw, stride, padding: Int
        var oh: Int { (height + 2 * padding - kh) / stride + 1 }
        var ow: Int { (width + 2 * padding - kw) / stride + 1 }
        var k: Int { channels * kh * kw }
        var positions: Int { batch * oh * ow }
        var inputCount: Int { batch * height * width * channels }
        var description: String { "B\(batch) \(height)×\(width)×\(channels) k\(kh)×\(kw) s\(stride) p\(padding)" }
    }

    static var geometries: [Geometry] {
        var all: [Geometry] = []
        for channels in [1, 2, 3, 5] {
            for (kh, kw) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (3, 5)] {
                for stride in 1...3 {
                    for padding in 0...2 {
                        for (h, w) in [(5, 6), (9, 7)] where h + 2 * padding >= kh && w + 2 * padding >= kw {
                            all.append(Geometry(batch: 2, height: h, width: w, channels: channels, kh: kh, kw: kw,
                                                stride: stride, padding: padding))
                        }
                    }
                }
            }
        }
        // Wider than the bf16 gather's block (ow·k > 4096 floats): a position at a time.
        all.append(Geometry(batch: 1, height: 6, width: 300, channels: 3, kh: 5, kw: 5, stride: 1, padding: 2))
        return all
    }

    /// Values with subnormals (which the bf16 roundings treat apart) and signed zeros.
    func input(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            switch i % 11 {
            case 3: return .leastNonzeroMagnitude * Float(i % 5 + 1)
            case 7: return -0.0
            default: return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 337
            }
        }
    }

    /// Calls `body` for every window element inside the image, in the
    /// kernels' order (output positions, then kernel rows, then columns):
    /// the position's first index in the matrix, the tap (i, j), and the
    /// index of the element's first channel in x.
    func forEachWindowElement(_ g: Geometry, _ body: (_ row: Int, _ i: Int, _ j: Int, _ pixel: Int) -> Void) {
        for b in 0..<g.batch { for oy in 0..<g.oh { for ox in 0..<g.ow {
            let row = ((b * g.oh + oy) * g.ow + ox) * g.k
            for i in 0..<g.kh { for j in 0..<g.kw {
                let (iy, ix) = (oy * g.stride - g.padding + i, ox * g.stride - g.padding + j)
                guard iy >= 0, iy < g.height, ix >= 0, ix < g.width else { continue }
                body(row, i, j, ((b * g.height + iy) * g.width + ix) * g.channels)
            } }
        } } }
    }

    /// cols[(b·oh + oy)·ow + ox][(c·kh + i)·kw + j] = x[b, oy·s − p + i, ox·s − p + j, c], 0 outside.
    func referenceIm2col(_ x: [Float], _ g: Geometry) -> [Float] {
        var cols = [Float](repeating: 0, count: g.positions * g.k)
        forEachWindowElement(g) { row, i, j, pixel in
            for c in 0..<g.channels { cols[row + (c * g.kh + i) * g.kw + j] = x[pixel + c] }
        }
        return cols
    }

    func testIm2colAndItsBF16RoundingAreThePlainLoopsBits() {
        for (n, g) in Self.geometries.enumerated() {
            let x = input(g.inputCount, seed: UInt64(n))
            let expected = referenceIm2col(x, g)
            var cols = [Float](repeating: .nan, count: expected.count)
            ck_im2col_nhwc(x, g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.stride, g.padding, g.oh, g.ow, &cols)
            XCTAssertEqual(cols.map(\.bitPattern), expected.map(\.bitPattern), "im2col \(g)")
            var rounded = [UInt16](repeating: 0, count: expected.count), fused = rounded
            ck_f32_to_bf16(expected, &rounded, expected.count)
            ck_im2col_nhwc_bf16(x, g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.stride, g.padding, g.oh, g.ow,
                                &fused)
            XCTAssertEqual(fused, rounded, "bf16 im2col \(g)")
        }
    }

    /// dx[b, iy, ix, c] = Σ over the windows that hold it of cols, added in
    /// the kernel's order (positions, then taps, then channels) from zero.
    func testCol2imIsThePlainLoopsSums() {
        for (n, g) in Self.geometries.enumerated() {
            let cols = input(g.positions * g.k, seed: 1000 + UInt64(n)).map { $0 == -0.0 ? 0.5 : $0 }
            var expected = [Float](repeating: 0, count: g.inputCount)
            forEachWindowElement(g) { row, i, j, pixel in
                for c in 0..<g.channels { expected[pixel + c] += cols[row + (c * g.kh + i) * g.kw + j] }
            }
            var dx = [Float](repeating: .nan, count: g.inputCount)
            ck_col2im_nhwc(cols, g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.stride, g.padding, g.oh, g.ow, &dx)
            XCTAssertEqual(dx.map(\.bitPattern), expected.map(\.bitPattern), "col2im \(g)")
        }
    }

    /// The tap-major gather (kernel rows copied whole), in 2- and 4-byte
    /// elements: copies shorter than 32 bytes, between 32 and 1024, and longer.
    func testTapMajorGatherIsThePlainLoops() {
        var geometries = Self.geometries
        geometries.append(Geometry(batch: 2, height: 9, width: 9, channels: 64, kh: 3, kw: 3, stride: 2, padding: 1))
        geometries.append(Geometry(batch: 1, height: 6, width: 6, channels: 130, kh: 3, kw: 3, stride: 1, padding: 1))
        for (n, g) in geometries.enumerated() {
            for elementSize in [2, 4] {
                let x = input(g.inputCount, seed: 2000 + UInt64(n)).map(\.bitPattern)
                let elements: [UInt32] = elementSize == 4 ? x : x.map { $0 & 0xFFFF }
                var expected = [UInt32](repeating: 0, count: g.positions * g.k)
                forEachWindowElement(g) { row, i, j, pixel in
                    for c in 0..<g.channels { expected[row + (i * g.kw + j) * g.channels + c] = elements[pixel + c] }
                }
                var gathered: [UInt32]
                if elementSize == 4 {
                    gathered = [UInt32](repeating: 0xDEAD, count: expected.count)
                    ck_im2col_nhwc_taps(elements, 4, g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.stride, g.padding,
                                        g.oh, g.ow, &gathered)
                } else {
                    let halves = elements.map { UInt16($0) }
                    var out = [UInt16](repeating: 0xDEAD, count: expected.count)
                    ck_im2col_nhwc_taps(halves, 2, g.batch, g.height, g.width, g.channels, g.kh, g.kw, g.stride, g.padding,
                                        g.oh, g.ow, &out)
                    gathered = out.map { UInt32($0) }
                }
                XCTAssertEqual(gathered, expected, "taps, \(elementSize)-byte elements, \(g)")
            }
        }
    }

    /// Any run of a rounded array, rounded alone, has the bits the whole
    /// array's rounding gives it (the AVX512_BF16 body reads subnormals as
    /// zeros, the scalar tail does not, so the place of an element matters).
    func testAPartIsRoundedAsTheWholeArrayRoundsIt() {
        for total in Array(0...40) + [63, 64, 65, 1031] {
            let values = input(total, seed: UInt64(total))
            var whole = [UInt16](repeating: 0, count: total)
            if total > 0 { ck_f32_to_bf16(values, &whole, total) }
            let firsts = total <= 40 ? Array(0...total) : [0, 1, 15, 16, 17, total / 2, total - 17, total - 1, total]
            for first in firsts {
                for n in Set([0, 1, 7, 16, 33, total - first]) where n >= 0 && first + n <= total {
                    var part = [UInt16](repeating: 0xDEAD, count: n)
                    if n > 0 {
                        values.withUnsafeBufferPointer { v in
                            ck_f32_to_bf16_part(v.baseAddress! + first, &part, n, first, total)
                        }
                    }
                    XCTAssertEqual(part, Array(whole[first ..< first + n]), "total \(total), first \(first), n \(n)")
                }
            }
        }
    }
}
