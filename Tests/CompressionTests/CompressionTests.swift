import Foundation
import XCTest
import TestSupport
import TensorCore
import VAEModel
@testable import Compression

final class ANSTests: XCTestCase {
    /// Fixtures/rans_vectors.json, from scripts/dev/make_rans_vectors.py (an independent rans64 in Python).
    func testKnownAnswerVectors() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "rans_vectors", withExtension: "json", subdirectory: "Fixtures"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let vectors = try XCTUnwrap(json["vectors"] as? [[String: Any]])
        XCTAssertEqual(vectors.count, 6)
        for (v, vector) in vectors.enumerated() {
            let symbols = try XCTUnwrap(vector["symbols"] as? [[Int]])
            let expected = try XCTUnwrap(vector["words"] as? [Int]).map { UInt32($0) }
            var message = ANSMessage()
            for s in symbols { message.push(start: UInt32(s[0]), frequency: UInt32(s[1]), precision: s[2]) }
            XCTAssertEqual(message.words, expected, "vector \(v)")
            // And back: every symbol, in reverse, to the empty message.
            var back = try ANSMessage(words: expected)
            for s in symbols.reversed() {
                let cf = back.peek(precision: s[2])
                XCTAssertTrue(UInt32(s[0]) <= cf && cf < UInt32(s[0] + s[1]), "vector \(v)")
                try back.pop(start: UInt32(s[0]), frequency: UInt32(s[1]), precision: s[2])
            }
            XCTAssertEqual(back, ANSMessage(), "vector \(v) decodes to the empty message")
        }
    }

    func testRandomStreamsRoundTrip() throws {
        // Random distributions at random precisions, pushed and popped back; the message shrinks back word for word.
        let words = RandomStream(seed: 42, domain: .sampling, 3).words(count: 200_000)
        var w = 0
        func next() -> UInt32 { defer { w += 1 }; return words[w] }
        for trial in 0..<20 {
            let precision = Int(next() % 24) + 8, n = Int(next() % 300) + 2
            var cdf = [0.0]
            var total = 0.0
            let weights = (0..<n).map { _ in pow(Double(next() % 1000) / 1000, 4) }
            for x in weights { total += x; cdf.append(total) }
            let distribution = QuantizedDistribution(cdf: cdf.map { $0 / total }, precision: precision)
            XCTAssertEqual(distribution.starts.last, UInt32(1 << precision))
            XCTAssertTrue((0..<n).allSatisfy { distribution.frequency($0) >= 1 }, "every symbol codable")
            let symbols = (0..<2000).map { _ in Int(next()) % n }
            var message = ANSMessage(head: ANSMessage.lowerBound, tail: [7, 8, 9])
            let start = message
            for s in symbols { message.push(s, distribution) }
            var decoded: [Int] = []
            for _ in symbols { decoded.append(try message.pop(distribution)) }
            XCTAssertEqual(decoded, symbols.reversed(), "trial \(trial)")
            XCTAssertEqual(message, start, "trial \(trial)")
        }
    }

    func testRunningOutOfWordsIsAnErrorNotATrap() throws {
        var message = ANSMessage()
        let distribution = QuantizedDistribution(cdf: [0, 0.5, 1], precision: 16)
        // Popping from an empty message reads bits that are not there: after the head's 32 spare bits, an error.
        XCTAssertThrowsError(try { for _ in 0..<64 { _ = try message.pop(distribution) } }()) {
            XCTAssertEqual($0 as? ANSError, .exhausted)
        }
        XCTAssertThrowsError(try ANSMessage(words: [1])) { XCTAssertEqual($0 as? ANSError, .exhausted) }
        XCTAssertThrowsError(try ANSMessage(words: [0, 0])) { XCTAssertEqual($0 as? ANSError, .badHead) }
    }

    func testQuantizationKeepsEverySymbolAndFollowsTheCDF() {
        // A CDF with zero-probability symbols and a step backwards (rounding): still increasing, summing to 2^p.
        let q = QuantizedDistribution(cdf: [0, 0, 0.5, 0.49999, 0.9, 1, 1], precision: 10)
        XCTAssertEqual(q.starts.first, 0)
        XCTAssertEqual(q.starts.last, 1024)
        for s in 0..<6 { XCTAssertGreaterThanOrEqual(q.frequency(s), 1, "symbol \(s)") }
        XCTAssertEqual(q.symbol(at: 0), 0)
        XCTAssertEqual(q.symbol(at: 1023), 5)
        for cf in stride(from: UInt32(0), to: 1024, by: 7) {
            let s = q.symbol(at: cf)
            XCTAssertTrue(q.start(s) <= cf && cf < q.start(s) + q.frequency(s))
        }
        // Frequencies follow the probabilities: half the mass for a half-probability symbol.
        XCTAssertEqual(Double(q.frequency(1)) / 1024, 0.5, accuracy: 0.01)
    }
}

final class PortableMathTests: XCTestCase {
    func testAgainstTheCLibrary() {
        var worst = (exp: 0.0, log: 0.0, log1p: 0.0, expm1: 0.0, erfc: 0.0)
        for i in -7000...7000 {
            let x = Double(i) / 100
            worst.exp = max(worst.exp, abs(PortableMath.exp(x) - Foundation.exp(x)) / Foundation.exp(x))
            worst.expm1 = max(worst.expm1, abs(PortableMath.expm1(x / 10) - Foundation.expm1(x / 10)) / abs(Foundation.expm1(x / 10) + 1e-300))
            let y = Foundation.exp(x / 3)
            worst.log = max(worst.log, abs(PortableMath.log(y) - Foundation.log(y)) / max(1, abs(Foundation.log(y))))
            worst.log1p = max(worst.log1p, abs(PortableMath.log1p(y - 0.99) - Foundation.log1p(y - 0.99))
                              / max(1e-300, abs(Foundation.log1p(y - 0.99))))
            let e = Foundation.erfc(x / 10)
            if e > 1e-300 { worst.erfc = max(worst.erfc, abs(PortableMath.erfc(x / 10) - e) / e) }
        }
        XCTAssertLessThan(worst.exp, 1e-15)
        XCTAssertLessThan(worst.log, 1e-15)
        XCTAssertLessThan(worst.log1p, 1e-14)
        XCTAssertLessThan(worst.expm1, 1e-14)
        XCTAssertLessThan(worst.erfc, 1e-10)   // the continued fraction near x = 3 (4e-11 measured)
        for p in [1e-12, 0.001, 0.25, 0.5, 0.9, 1 - 1e-9] {
            XCTAssertEqual(PortableMath.normalCDF(PortableMath.normalQuantile(p)), p, accuracy: 1e-13 + 1e-12 * p)
        }
        XCTAssertEqual(PortableMath.normalQuantile(0.5), 0, accuracy: 1e-15)
    }
}

final class BitsBackTests: XCTestCase {
    /// A small trained-looking model: an MLP on 3×4 samples of 8 levels.
    func codec(_ likelihood: Likelihood, conv: Bool = false, precisions: CodecPrecisions = .defaults) throws -> BitsBackCodec {
        let image = conv ? ImageShape(channels: 2, height: 4, width: 4) : ImageShape(channels: 1, height: 3, width: 4)
        let architecture: Architecture = conv ? .conv(.init(channels: [3, 5], latentSize: 3, likelihood: likelihood))
            : .mlp(.init(hiddenSize: 7, latentSize: 3, likelihood: likelihood))
        func parameters<Options: ArchitectureOptions>(_ options: Options) -> [(name: String, tensor: Tensor)] {
            options.makeModel(for: image, seed: 11).namedParameters
        }
        let model = try PortableModel(architecture: architecture, image: image, parameters: parameters(architecture.options))
        return try BitsBackCodec(model: model, likelihood: likelihood, levels: likelihood.levels ?? 2, precisions: precisions)
    }

    func samples(_ n: Int, size: Int, levels: Int, seed: UInt32) -> [[Int]] {
        let words = RandomStream(seed: 8, domain: .sampling, seed).words(count: n * size)
        return (0..<n).map { i in (0..<size).map { Int(words[i * size + $0] % UInt32(levels)) } }
    }

    func testRoundTripsForEveryDiscreteLikelihoodAndBothFamilies() throws {
        for (likelihood, conv) in [(Likelihood(DiscretizedLogisticLikelihood(mixtures: 1, levels: 8)), false),
                                   (Likelihood(DiscretizedLogisticLikelihood(mixtures: 3, levels: 8)), true),
                                   (Likelihood(BetaBinomialLikelihood(levels: 8)), false),
                                   (Likelihood(BetaBinomialLikelihood(levels: 8)), true),
                                   (.bernoulli, false)] {
            let codec = try self.codec(likelihood, conv: conv)
            let k = likelihood.levels ?? 2
            let xs = samples(25, size: codec.model.image.size, levels: k, seed: conv ? 1 : 2)
            var message = codec.seedMessage(chain: 3)
            for x in xs.reversed() { try codec.encode(x, onto: &message) }
            var back = try ANSMessage(words: message.words)
            var decoded: [[Int]] = []
            for _ in xs { decoded.append(try codec.decode(from: &back)) }
            XCTAssertEqual(decoded, xs, "\(likelihood), conv \(conv)")
            XCTAssertEqual(back, codec.seedMessage(chain: 3), "the chain returns to its seed")
        }
    }

    func testTheNetRateIsTheNegativeELBO() throws {
        // With many samples the message grows by about −ELBO per sample (the KL comes back); checked against the
        // codec's own one-sample ELBO estimate: the expected net cost is E_q[−log p(x|z) − log p(z) + log q(z|x)].
        let likelihood = Likelihood(BetaBinomialLikelihood(levels: 8))
        let codec = try self.codec(likelihood, precisions: CodecPrecisions(latent: 10, posterior: 20, likelihood: 20))
        let xs = samples(400, size: codec.model.image.size, levels: 8, seed: 5)
        var message = codec.seedMessage(chain: 0)
        let start = message.bitCount
        for x in xs.reversed() { try codec.encode(x, onto: &message) }
        let netBits = Double(message.bitCount - start) / Double(xs.count)
        // The ELBO by Monte Carlo on the same (portable) model, 64 draws per sample.
        var elbo = 0.0
        for (i, x) in xs.enumerated() {
            let (mean, logVariance) = codec.model.posterior(codec.scaled(x))
            let noise = RandomStream(seed: 77, domain: .sampling, UInt32(i)).normals(count: 64 * 3)
            var sum = 0.0
            for s in 0..<64 {
                var z = [Float](repeating: 0, count: 3), kl = 0.0
                for j in 0..<3 {
                    z[j] = mean[j] + noise[s * 3 + j] * Float(Foundation.exp(0.5 * Double(logVariance[j])))
                    let m = Double(mean[j]), v = Double(logVariance[j])
                    kl += 0.5 * (m * m + Foundation.exp(v) - 1 - v)
                }
                let planes = codec.model.likelihoodParameters(z)
                var nll = 0.0
                for d in 0..<x.count {
                    let cdf = likelihood.levelCDF([Double(planes[0][d]), Double(planes[1][d])], LibmMath.self)!
                    nll -= Foundation.log(cdf[x[d] + 1] - cdf[x[d]])
                }
                sum += nll + kl
            }
            elbo += sum / 64
        }
        let elboBits = elbo / Double(xs.count) / Foundation.log(2)
        XCTAssertEqual(netBits, elboBits, accuracy: 0.02 * elboBits, "net bits per sample against −ELBO")
    }

    func testContinuousLikelihoodsAreRefusedByName() throws {
        XCTAssertThrowsError(try codec(.gaussianLearned)) {
            XCTAssertEqual($0 as? BitsBackCodec.Failure, .notDiscrete("gaussian-learned"))
        }
        XCTAssertThrowsError(try codec(.gaussian(sigma: 1)))
        XCTAssertThrowsError(try codec(Likelihood(BetaBinomialLikelihood(levels: 8)),
                                       precisions: CodecPrecisions(latent: 8, posterior: 8, likelihood: 16))) {
            XCTAssertEqual(($0 as? InvalidSetting)?.field, "posterior_precision")
        }
    }

    func testTheContainerRoundTripsAndRefusesDamage() throws {
        let header = CompressedFile.Header(
            modelHash: "fnv1a64:1234", checkpoint: "runs/x", architecture: .mlp(.init(hiddenSize: 4, latentSize: 2,
                                                                                   likelihood: Likelihood(BetaBinomialLikelihood(levels: 256)))),
            image: ImageShape(channels: 1, height: 2, width: 2), levels: 256, count: 3, precisions: .defaults, seedWords: 33,
            source: .npy(descr: "|u1", shape: [3, 2, 2]), elboBitsPerDimension: 1.5, writer: "vae-mpi 0.1.0")
        let file = CompressedFile(header: header, chunks: [.init(first: 0, count: 2, words: [1, 2, 3, 0x8000_0000, 1]),
                                                           .init(first: 2, count: 1, words: [9, 0x8000_0000, 0])])
        let bytes = file.bytes
        XCTAssertEqual(try CompressedFile(parsing: bytes, path: "f.vaez"), file)
        func refused(_ bytes: [UInt8], _ expected: CompressedFileError, line: UInt = #line) {
            XCTAssertThrowsError(try CompressedFile(parsing: bytes, path: "f.vaez"), line: line) {
                XCTAssertEqual($0 as? CompressedFileError, expected, line: line)
            }
        }
        refused(Array(bytes.dropLast(3)), .truncated(path: "f.vaez", part: "chunk 1"))
        refused(Array(bytes.prefix(30)), .truncated(path: "f.vaez", part: "the header"))
        var flipped = bytes
        flipped[flipped.count - 5] ^= 1
        refused(flipped, .damaged(path: "f.vaez", part: "chunk 1"))
        flipped = bytes
        flipped[20] ^= 1
        refused(flipped, .damaged(path: "f.vaez", part: "the header"))
        refused(Array("PK\u{3}\u{4}rest".utf8), .notCompressed(path: "f.vaez"))
        refused(bytes + [0], .badHeader(path: "f.vaez", detail: "1 bytes after the last chunk"))
    }
}
