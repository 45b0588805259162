import Foundation
import Imaging
import TensorCore

/// An image file that could not be used, and why.
public struct BadImage: Equatable, Sendable, Codable {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// Image files with their headers and, in class folders, their labels.
public struct ImageFiles: Sendable {
    public var paths: [String]
    public var headers: [ImageHeader]
    public var labels: [Int32]?

    public init(paths: [String], headers: [ImageHeader], labels: [Int32]?) {
        precondition(paths.count == headers.count && (labels == nil || labels!.count == paths.count))
        self.paths = paths
        self.headers = headers
        self.labels = labels
    }

    public var count: Int { paths.count }

    public func selecting(_ indices: [Int]) -> ImageFiles {
        ImageFiles(paths: indices.map { paths[$0] }, headers: indices.map { headers[$0] },
                   labels: labels.map { l in indices.map { l[$0] } })
    }
}

/// A folder of PNG and JPEG images as a dataset, in one of three layouts
/// (those of torchvision's `ImageFolder` and Keras'
/// `image_dataset_from_directory`):
///
///     DIR/train/…  DIR/test/…     the two sets; inside each, class folders or images
///     DIR/<class>/…               labelled by class; the test set is held out
///     DIR/*.png                   no labels; the test set is held out
///
/// Class folders sort by name (code points, as Python sorts them) and give
/// labels 0…K−1; images inside a class folder are found at any depth.
/// Files are matched by extension (.png .jpg .jpeg in any case); hidden
/// files and folders are ignored, other files are counted and skipped.
/// Scanning reads each file's header only (see `ImageHeader`).
public struct ImageFolder: Sendable {
    public enum Layout: String, Sendable {
        case splits = "train/ and test/ folders"
        case classes = "class folders"
        case flat = "a flat folder of images"
    }

    public let path: String
    public let layout: Layout
    public let classNames: [String]?
    public let train: ImageFiles
    /// The test folder's images (layout `.splits` only).
    public let test: ImageFiles?
    /// Files that are not images by their extension.
    public let otherFiles: [String]
    /// Images whose header could not be read (kept only when skipping bad images).
    public let bad: [BadImage]

    /// Whether `path` is a folder of images (in any of the layouts): it
    /// holds image files or subfolders, and no IDX or NPY training file.
    public static func holdsImages(_ path: String) -> Bool {
        guard isDirectory(path) else { return false }
        let entries = visibleEntries(path)
        if DatasetDirectory.trainingFileNames.contains(where: entries.contains) { return false }
        return entries.contains { isImageName($0) || isDirectory(path + "/" + $0) }
    }

    /// Scans `path`. A file whose header cannot be read is an error, or,
    /// with `skippingBadImages`, is left out and listed in `bad`.
    public init(scanning path: String, skippingBadImages: Bool) throws {
        self.path = path
        guard isDirectory(path) else { throw DatasetError.notFound(path: path, hint: "not a folder") }
        var other: [String] = []
        var bad: [BadImage] = []
        let entries = visibleEntries(path)
        let hasSplits = entries.contains("train") && isDirectory(path + "/train")
            && entries.contains("test") && isDirectory(path + "/test")
        if hasSplits {
            layout = .splits
            let classes = Self.classFolders(path + "/train")
            let names = classes.isEmpty ? nil : classes
            train = try Self.split(path + "/train", classNames: names, other: &other, bad: &bad, skip: skippingBadImages)
            let testClasses = Self.classFolders(path + "/test")
            if let names {
                if let stray = testClasses.first(where: { !names.contains($0) }) {
                    throw DatasetError.incompatible(
                        path: path + "/test/" + stray,
                        detail: "a test class with no training folder (the classes come from \(path)/train: \(names.joined(separator: ", ")))")
                }
            } else if !testClasses.isEmpty {
                throw DatasetError.incompatible(path: path + "/test",
                                                detail: "has class folders but \(path)/train has none")
            }
            test = try Self.split(path + "/test", classNames: names, other: &other, bad: &bad, skip: skippingBadImages)
            guard test!.count > 0 else {
                throw DatasetError.incompatible(path: path + "/test", detail: "holds no PNG or JPEG images")
            }
            classNames = names
        } else {
            let classes = Self.classFolders(path)
            layout = classes.isEmpty ? .flat : .classes
            classNames = classes.isEmpty ? nil : classes
            train = try Self.split(path, classNames: classNames, other: &other, bad: &bad, skip: skippingBadImages)
            test = nil
        }
        guard train.count > 0 else {
            throw DatasetError.incompatible(
                path: hasSplits ? path + "/train" : path,
                detail: "holds no PNG or JPEG images" + (other.isEmpty ? "" : " (\(other.count) other files)"))
        }
        otherFiles = other
        self.bad = bad
    }

    /// Visible subfolders of `path`, sorted by code points (Python's sort).
    static func classFolders(_ path: String) -> [String] {
        visibleEntries(path).filter { isDirectory(path + "/" + $0) }.sorted(by: codePointOrder)
    }

    /// The images of one split: in class folders (any depth) or directly in `path`.
    static func split(_ path: String, classNames: [String]?, other: inout [String], bad: inout [BadImage],
                      skip: Bool) throws -> ImageFiles {
        var paths: [String] = []
        var labels: [Int32] = []
        if let classNames {
            // Files beside the class folders belong to no class.
            for name in visibleEntries(path) where !isDirectory(path + "/" + name) { other.append(path + "/" + name) }
            for (label, name) in classNames.enumerated() where isDirectory(path + "/" + name) {
                for file in walk(path + "/" + name) {
                    if isImageName(file) { paths.append(file); labels.append(Int32(label)) } else { other.append(file) }
                }
            }
        } else {
            for name in visibleEntries(path).sorted(by: codePointOrder) {
                let file = path + "/" + name
                if isDirectory(file) { continue }
                if isImageName(name) { paths.append(file) } else { other.append(file) }
            }
        }
        var kept: [Int] = []
        var headers: [ImageHeader] = []
        for (i, file) in paths.enumerated() {
            do {
                headers.append(try ImageHeader.read(path: file))
                kept.append(i)
            } catch {
                guard skip else { throw error }
                bad.append(BadImage(path: file, reason: Self.reason(error)))
            }
        }
        return ImageFiles(paths: kept.map { paths[$0] }, headers: headers,
                          labels: classNames == nil ? nil : kept.map { labels[$0] })
    }

    /// What failed, without the path (the bad-image list names it).
    static func reason(_ error: Error) -> String {
        if case let ImageError.corrupt(_, detail) = error { return detail }
        return "\(error)"
    }

    /// Every visible file under `root`, depth first, folders and files
    /// sorted by name (as torchvision's sorted os.walk).
    static func walk(_ root: String) -> [String] {
        var files: [String] = []
        var folders: [String] = []
        for name in visibleEntries(root).sorted(by: codePointOrder) {
            let full = root + "/" + name
            if isDirectory(full) { folders.append(full) } else { files.append(full) }
        }
        return files + folders.flatMap(walk)
    }

    static func isImageName(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: "."), !name.hasPrefix(".") else { return false }
        return ImageFormat.extensions.contains(name[name.index(after: dot)...].lowercased())
    }
}

func codePointOrder(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
}

func visibleEntries(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }
}

func isDirectory(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}

/// How a folder's images become training images: the transform, the
/// shape they all end up with, and whether they keep 8 bits (bytes) or
/// more (floats in [0, 1], when any image has 16-bit samples).
public struct ImageDecoding: Sendable {
    public let transform: ImageTransform
    public let shape: ImageShape
    public let sixteenBit: Bool
    /// Masks of missing pixels (`--mask DIR` beside an image folder).
    public var masks: MaskFolder?

    /// Settles the decoding for these images (every split's): channels (by
    /// default 1 when every image is gray, 3 otherwise), the output size
    /// (every image's size must agree unless `size` resizes them), the depth.
    public init(for files: [ImageFiles], channels: Int?, size: (height: Int, width: Int)?, centerCrop: Int?,
                optionHint: (size: String, crop: String) = ("--image-size", "--center-crop")) throws {
        let all = files.flatMap { zip($0.paths, $0.headers) }
        let gray = all.allSatisfy { $0.1.isGray }
        let transform = ImageTransform(channels: channels ?? (gray ? 1 : 3), centerCrop: centerCrop, size: size)
        var first: (path: String, size: (height: Int, width: Int))? = nil
        for (path, header) in all {
            switch transform.outputSize(height: header.height, width: header.width) {
            case .failure(let e):
                throw DatasetError.incompatible(
                    path: path, detail: "\(optionHint.crop) \(e.crop) is larger than the image (\(e.width) × \(e.height) pixels, width × height)")
            case .success(let out):
                if let first, first.size != out {
                    let sizes = centerCrop == nil ? "" : " after the crop"
                    throw DatasetError.incompatible(
                        path: path,
                        detail: "is \(header.width) × \(header.height) pixels (width × height) but \(first.path) is "
                            + "\(first.size.width) × \(first.size.height)\(sizes); images of different sizes need "
                            + "\(optionHint.size) H,W to resize them to one size")
                }
                if first == nil { first = (path, out) }
            }
        }
        let out: (height: Int, width: Int) = first?.size ?? (1, 1)
        self.transform = transform
        shape = ImageShape(channels: transform.channels, height: out.height, width: out.width)
        sixteenBit = all.contains { $0.1.depth == 16 }
    }

    /// Decodes `files` into an image set (labels kept). A file that fails is
    /// an error naming it, or, `skippingBad`, is left out and listed.
    public func decode(_ files: ImageFiles, skippingBad: Bool, source: String) throws -> (images: ImageSet, bad: [BadImage]) {
        let d = shape.size
        var bytes: [UInt8] = []
        var floats: [Float] = []
        if sixteenBit { floats.reserveCapacity(files.count * d) } else { bytes.reserveCapacity(files.count * d) }
        var kept: [Int] = []
        var bad: [BadImage] = []
        var observed: [UInt8] = []
        for (i, path) in files.paths.enumerated() {
            let values: [Float]
            do {
                let image = try DecodedImage(contentsOf: path)
                let header = files.headers[i]
                guard image.width == header.width, image.height == header.height else {
                    throw ImageError.corrupt(path: path, detail: "decodes to \(image.width) × \(image.height), its header says \(header.width) × \(header.height)")
                }
                values = transform.apply(image)
                if let masks { observed += try masks.observed(for: path, image: image, transform: transform) }
                if sixteenBit {
                    let scale = 1 / Float(image.maximum)
                    floats.append(contentsOf: values.lazy.map { $0 * scale })
                } else {
                    bytes.append(contentsOf: values.lazy.map { UInt8(min(max($0.rounded(), 0), 255)) })
                }
                kept.append(i)
            } catch {
                guard skippingBad else { throw error }
                bad.append(BadImage(path: path, reason: ImageFolder.reason(error)))
            }
        }
        let labels = files.labels.map { l in kept.map { l[$0] } }
        // 8-bit images stay bytes (256 levels); 16-bit ones, scaled and possibly resized, are floats.
        let values = sixteenBit ? SampleValues(floats: floats) : SampleValues(bytes: bytes)
        let mask = masks != nil && observed.contains(0) ? observed : nil
        return (ImageSet(shape: shape, values: values, labels: labels, source: source, observed: mask), bad)
    }
}

/// A folder of masks beside an image folder: the mask of `images/a/b.jpg`
/// is `masks/a/b.png` (any image format; its dark pixels, below half the
/// maximum, are missing in every channel), cropped and resized as the
/// images are. An image without a mask file has every pixel observed.
public struct MaskFolder: Sendable, Equatable {
    public let images: String
    public let masks: String

    public init(images: String, masks: String) {
        self.images = images
        self.masks = masks
    }

    /// The mask file of an image (which may not exist).
    public func path(for image: String) -> String {
        var relative = image.hasPrefix(images + "/") ? String(image.dropFirst(images.count + 1)) : (image as NSString).lastPathComponent
        relative = (relative as NSString).deletingPathExtension
        return masks + "/" + relative + ".png"
    }

    /// 1 observed, 0 missing for each value of the transformed image (C·H·W).
    func observed(for imagePath: String, image: DecodedImage, transform: ImageTransform) throws -> [UInt8] {
        let path = path(for: imagePath)
        var gray = transform
        gray.channels = 1
        let plane = try { () throws -> [UInt8] in
            guard FileManager.default.fileExists(atPath: path) else {
                let (h, w) = (try? transform.outputSize(height: image.height, width: image.width).get()) ?? (image.height, image.width)
                return [UInt8](repeating: 1, count: h * w)
            }
            let mask = try DecodedImage(contentsOf: path)
            guard mask.width == image.width, mask.height == image.height else {
                throw DatasetError.incompatible(path: path, detail: "is \(mask.width) × \(mask.height) pixels but its image "
                                                + "\(imagePath) is \(image.width) × \(image.height): a mask has the image's size")
            }
            let half = Float(mask.maximum) / 2
            return gray.apply(mask).map { $0 >= half ? 1 : 0 }
        }()
        return (0..<transform.channels).flatMap { _ in plane }
    }
}
