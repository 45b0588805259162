import Foundation
import XCTest
import Imaging
import TensorCore
import TestSupport
@testable import Datasets

/// Image folders: layouts, labels and class names, what is ignored and
/// skipped, the header scan, the transform (colour, alpha, crop, resize)
/// and bad files. Pixel-exact comparisons with Pillow are in the
/// multi-rank tests (Tests/MultiRank/images.py).
final class ImageFolderTests: XCTestCase {
    /// A gray or RGB PNG whose pixels are `value` + position.
    func writePNG(_ path: String, width: Int = 4, height: Int = 2, channels: Int = 1, value: UInt8 = 0) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        let pixels = (0..<(width * height * channels)).map { UInt8((Int(value) + $0) % 256) }
        let png = try Raster(width: width, height: height, channels: channels, pixels: pixels).pngData()
        FileManager.default.createFile(atPath: path, contents: Data(png))
    }

    func testClassFoldersSortedWithLabelsAndIgnoredFiles() throws {
        let dir = try temporaryDirectory()
        // Code-point order: "B" < "a" < "b" (Python's sorted), nested files belong to their class.
        for (name, count) in [("b", 2), ("B", 1), ("a", 3)] {
            for i in 0..<count { try writePNG("\(dir)/\(name)/\(i).png", value: UInt8(i)) }
        }
        try writePNG("\(dir)/a/deeper/z.PNG")
        try writePNG("\(dir)/a/.hidden.png")
        try writePNG("\(dir)/.hidden/x.png")
        FileManager.default.createFile(atPath: "\(dir)/a/readme.md", contents: Data("x".utf8))
        let folder = try ImageFolder(scanning: dir, skippingBadImages: false)
        XCTAssertEqual(folder.layout, .classes)
        XCTAssertEqual(folder.classNames, ["B", "a", "b"])
        XCTAssertEqual(folder.train.labels, [0, 1, 1, 1, 1, 2, 2])
        XCTAssertEqual(folder.train.paths.map { $0.replacingOccurrences(of: dir + "/", with: "") },
                       ["B/0.png", "a/0.png", "a/1.png", "a/2.png", "a/deeper/z.PNG", "b/0.png", "b/1.png"])
        XCTAssertEqual(folder.otherFiles.map { ($0 as NSString).lastPathComponent }, ["readme.md"])
        XCTAssertNil(folder.test)
        XCTAssertTrue(ImageFolder.holdsImages(dir))
        // Held out at the default fraction 0.1 (at least one), seeded.
        let prepared = try DataSource(directory: dir).prepare(seed: 1)
        XCTAssertEqual([prepared.train.count, prepared.test.count], [6, 1])
        XCTAssertTrue(prepared.testIsHeldOut)
        XCTAssertEqual(prepared.classCount, 3)
        XCTAssertEqual(prepared.notes, ["skipped 1 file that is not .png, .jpg or .jpeg (e.g. readme.md)"])
    }

    func testTrainTestAndFlatLayouts() throws {
        let dir = try temporaryDirectory()
        for split in ["train", "test"] {
            for c in ["cat", "dog"] { try writePNG("\(dir)/\(split)/\(c)/1.png") }
        }
        try writePNG("\(dir)/train/dog/2.jpg.png")
        let folder = try ImageFolder(scanning: dir, skippingBadImages: false)
        XCTAssertEqual(folder.layout, .splits)
        XCTAssertEqual(folder.classNames, ["cat", "dog"])
        XCTAssertEqual(folder.train.labels, [0, 1, 1])
        XCTAssertEqual(folder.test?.labels, [0, 1])
        let splits = try DataSource(directory: dir).load(seed: 1)
        XCTAssertEqual([splits.train.count, splits.test.count], [3, 2])
        XCTAssertFalse(splits.testIsHeldOut)
        XCTAssertEqual(splits.train.shape, ImageShape(channels: 1, height: 2, width: 4))
        // A test class the training set lacks.
        try writePNG("\(dir)/test/emu/1.png")
        XCTAssertThrowsError(try ImageFolder(scanning: dir, skippingBadImages: false)) {
            XCTAssertTrue("\($0)".contains("test/emu: a test class with no training folder"), "\($0)")
        }
        let flat = try temporaryDirectory()
        for i in 0..<10 { try writePNG("\(flat)/\(i).png", channels: 3) }
        let flatFolder = try ImageFolder(scanning: flat, skippingBadImages: false)
        XCTAssertEqual(flatFolder.layout, .flat)
        XCTAssertNil(flatFolder.train.labels)
        let data = try DataSource(directory: flat, testFraction: 0.3).load(seed: 2)
        XCTAssertEqual([data.train.count, data.test.count], [7, 3])
        XCTAssertEqual(data.train.shape.channels, 3, "colour images: 3 channels by default")
        XCTAssertNil(data.train.labels)
        XCTAssertThrowsError(try DataSource(directory: try temporaryDirectory()).prepare(seed: 1))
    }

    func testSizesMustAgreeUnlessResized() throws {
        let dir = try temporaryDirectory()
        try writePNG("\(dir)/a.png", width: 4, height: 2)
        try writePNG("\(dir)/b.png", width: 5, height: 2)
        XCTAssertThrowsError(try DataSource(directory: dir).prepare(seed: 1)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("b.png: is 5 × 2 pixels (width × height) but \(dir)/a.png is 4 × 2"), text)
            XCTAssertTrue(text.contains("--image-size"), text)
        }
        var source = DataSource(directory: dir)
        source.imageSize = [3, 3]
        XCTAssertEqual(try source.prepare(seed: 1).shape, ImageShape(channels: 1, height: 3, width: 3))
        source.centerCrop = 3
        XCTAssertThrowsError(try source.prepare(seed: 1)) { XCTAssertTrue("\($0)".contains("larger than the image"), "\($0)") }
        var idx = DataSource(directory: dir)
        idx.channels = 2
        XCTAssertThrowsError(try idx.prepare(seed: 1)) { XCTAssertTrue("\($0)".contains("channels must be 1 or 3"), "\($0)") }
    }

    func testHeadersAndBadFiles() throws {
        let dir = try temporaryDirectory()
        try writePNG("\(dir)/good.png", width: 7, height: 3, channels: 3)
        XCTAssertEqual(try ImageHeader.read(path: "\(dir)/good.png"),
                       ImageHeader(format: .png, width: 7, height: 3, isGray: false, depth: 8))
        let png = try XCTUnwrap(FileManager.default.contents(atPath: "\(dir)/good.png"))
        FileManager.default.createFile(atPath: "\(dir)/cut.png", contents: png.prefix(png.count - 20))   // into the image data
        FileManager.default.createFile(atPath: "\(dir)/empty.jpg", contents: Data())
        FileManager.default.createFile(atPath: "\(dir)/text.png", contents: Data("hello, world".utf8))
        XCTAssertThrowsError(try ImageHeader.read(path: "\(dir)/empty.jpg")) {
            XCTAssertEqual("\($0)", "\(dir)/empty.jpg: corrupt or truncated image: the file is empty")
        }
        XCTAssertThrowsError(try ImageFolder(scanning: dir, skippingBadImages: false))
        let folder = try ImageFolder(scanning: dir, skippingBadImages: true)
        XCTAssertEqual(folder.bad.map { ($0.path as NSString).lastPathComponent }, ["empty.jpg", "text.png"])
        // The truncated file's header is whole; decoding finds it.
        let decoding = try ImageDecoding(for: [folder.train], channels: nil, size: nil, centerCrop: nil)
        XCTAssertThrowsError(try decoding.decode(folder.train, skippingBad: false, source: dir)) {
            XCTAssertTrue("\($0)".hasPrefix("\(dir)/cut.png: corrupt or truncated image: PNG:"), "\($0)")
        }
        let (images, bad) = try decoding.decode(folder.train, skippingBad: true, source: dir)
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(bad.map { ($0.path as NSString).lastPathComponent }, ["cut.png"])
    }

    func testTransformColourAlphaCropAndResize() {
        // RGBA composited on black, then RGB → L by Pillow's fixed-point luma.
        let rgba = DecodedImage(width: 2, height: 1, channels: 4, depth: 8, samples: [200, 100, 50, 255, 200, 100, 50, 128])
        XCTAssertEqual(ImageTransform(channels: 3).apply(rgba), [200, 100, 100, 50, 50, 25])
        let l = (200 * 19595 + 100 * 38470 + 50 * 7471 + 0x8000) >> 16
        XCTAssertEqual(ImageTransform(channels: 1).apply(rgba)[0], Float(l))
        let gray = DecodedImage(width: 1, height: 1, channels: 1, depth: 16, samples: [65535])
        XCTAssertEqual(ImageTransform(channels: 3).apply(gray), [65535, 65535, 65535])
        // Center crop: torchvision's offsets round half to even (5 - 2) / 2 = 1.5 → 2.
        let ramp = DecodedImage(width: 5, height: 1, channels: 1, depth: 8, samples: [0, 1, 2, 3, 4])
        let crop = ImageTransform(channels: 1, centerCrop: 1)
        XCTAssertEqual(try crop.outputSize(height: 1, width: 5).get().width, 1)
        XCTAssertEqual(crop.apply(ramp), [2])
        let wide = DecodedImage(width: 6, height: 1, channels: 1, depth: 8, samples: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(ImageTransform(channels: 1, centerCrop: 1).apply(DecodedImage(width: 4, height: 1, channels: 1,
                                                                                    depth: 8, samples: [0, 1, 2, 3])), [2],
                       "(4 - 1) / 2 = 1.5 rounds to 2")
        XCTAssertEqual(ImageTransform(channels: 1, size: (1, 3)).apply(wide), [0.5, 2.5, 4.5])
        XCTAssertEqual(ImageTransform.roundHalfEven(1.5), 2)
        XCTAssertEqual(ImageTransform.roundHalfEven(0.5), 0)
        // Box when shrinking: means of whole pixels; bilinear when enlarging.
        let four = DecodedImage(width: 4, height: 1, channels: 1, depth: 8, samples: [0, 10, 20, 40])
        XCTAssertEqual(ImageTransform(channels: 1, size: (1, 2)).apply(four), [5, 30])
        let two = DecodedImage(width: 2, height: 1, channels: 1, depth: 8, samples: [0, 100])
        XCTAssertEqual(ImageTransform(channels: 1, size: (1, 4)).apply(two), [0, 25, 75, 100])
    }
}
