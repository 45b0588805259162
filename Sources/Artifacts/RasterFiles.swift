import Imaging

extension Raster {
    /// Reads a PNG file.
    public init(contentsOf path: String) throws {
        try self.init(pngData: try Files.read(path), path: path)
    }

    /// Writes a PNG file atomically.
    public func write(to path: String) throws {
        try Files.writeAtomically(try pngData(), to: path)
    }
}
