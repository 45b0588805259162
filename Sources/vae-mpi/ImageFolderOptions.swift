import ArgumentParser
import Datasets
import Foundation

/// --channels, --image-size, --center-crop and --skip-bad-images: how the
/// images of a folder become training images (train and export-data).
struct ImageFolderOptions: ParsableArguments {
    @Option(name: OptionName.channels.name, help: ArgumentHelp(
        "Image folders: decode to 1 (gray) or 3 (RGB) channels (default: 1 when every image is gray, else 3). Alpha is composited on black.",
        valueName: "1|3"))
    var channels: Int?

    @Option(name: OptionName.imageSize.name, help: ArgumentHelp(
        "Image folders: resize every image to H×W (box filter when shrinking, bilinear when enlarging); without it every image must have the same size.",
        valueName: "H,W"))
    var imageSize: String?

    @Option(name: OptionName.centerCrop.name, help: ArgumentHelp(
        "Image folders: crop the central S×S of each image first (CelebA: 148, then \(OptionName.imageSize) 64,64).",
        valueName: "S"))
    var centerCrop: Int?

    @Flag(name: OptionName.skipBadImages.name,
          help: "Image folders: skip unreadable, truncated or corrupt images (counted, and listed in metrics.jsonl) instead of stopping.")
    var skipBadImages = false

    func validate() throws {
        _ = try parsedImageSize()
        if let channels, channels != 1 && channels != 3 { throw invalid(.channels, "must be 1 or 3 (got \(channels))") }
        try require(centerCrop, atLeast: 1, .centerCrop)
    }

    func parsedImageSize() throws -> [Int]? {
        guard let imageSize else { return nil }
        let parts = imageSize.split(separator: ",", omittingEmptySubsequences: false)
            .map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let h = parts[0], let w = parts[1], (1...16384).contains(h), (1...16384).contains(w) else {
            throw invalid(.imageSize, "must be H,W: two integers from 1 to 16384, like 64,64 (got \(imageSize))")
        }
        return [h, w]
    }

    /// Sets the options given on `source`.
    func apply(to source: inout DataSource) throws {
        if let channels { source.channels = channels }
        if let size = try parsedImageSize() { source.imageSize = size }
        if let centerCrop { source.centerCrop = centerCrop }
        if skipBadImages { source.skipBadImages = true }
    }
}
