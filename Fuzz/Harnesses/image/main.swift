import Foundation
import Imaging

private let path = "/dev/shm/vae-mpi-fuzz-image-\(getpid())"

/// PNG and JPEG: the header scan (from a file, as a folder scan reads it)
/// and the full decode with libpng / libjpeg-turbo, then the transform.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: size))
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    _ = try? ImageHeader.read(path: path)
    if let image = try? DecodedImage(decoding: bytes, path: "fuzz") {
        _ = ImageTransform(channels: 3, size: (5, 7)).apply(image)
        _ = ImageTransform(channels: 1, centerCrop: 1).apply(image)
    }
    return 0
}
