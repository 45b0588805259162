import Foundation

/// What an image file's header says, read without decoding its pixels:
/// the few bytes before the image data (PNG: IHDR and, for a palette, PLTE;
/// JPEG: the start-of-frame segment). Enough to check sizes and choose
/// channels for a whole folder before any rank decodes its share.
public struct ImageHeader: Equatable, Sendable {
    public var format: ImageFormat
    public var width: Int
    public var height: Int
    /// No colour: gray PNGs (with or without alpha), palettes whose every
    /// entry is gray, one-component JPEGs.
    public var isGray: Bool
    /// Bits per sample after decoding: 8, or 16 for 16-bit PNGs.
    public var depth: Int

    public init(format: ImageFormat, width: Int, height: Int, isGray: Bool, depth: Int) {
        self.format = format
        self.width = width
        self.height = height
        self.isGray = isGray
        self.depth = depth
    }

    /// Reads the header of the image file at `path`.
    public static func read(path: String) throws -> ImageHeader {
        let file = try HeaderReader(path: path)
        defer { file.close() }
        let signature = try file.bytes(at: 0, count: 8, what: "signature")
        switch ImageFormat(signature: signature) {
        case .png?: return try png(file)
        case .jpeg?: return try jpeg(file)
        case nil: throw ImageError.corrupt(path: path, detail: "neither PNG nor JPEG (unrecognised first bytes)")
        }
    }

    private static func png(_ file: HeaderReader) throws -> ImageHeader {
        func u32(_ b: [UInt8], _ i: Int) -> Int {
            var value = 0
            for k in 0..<4 { value = value << 8 | Int(b[i + k]) }
            return value
        }
        let ihdr = try file.bytes(at: 8, count: 25, what: "PNG header (IHDR)")
        guard u32(ihdr, 0) == 13, Array(ihdr[4..<8]) == Array("IHDR".utf8) else {
            throw file.corrupt("PNG: the first chunk is not a valid IHDR")
        }
        let (width, height, depth, color) = (u32(ihdr, 8), u32(ihdr, 12), Int(ihdr[16]), Int(ihdr[17]))
        guard width > 0, height > 0, [1, 2, 4, 8, 16].contains(depth), [0, 2, 3, 4, 6].contains(color) else {
            throw file.corrupt("PNG: invalid IHDR (\(width) × \(height), bit depth \(depth), colour type \(color))")
        }
        var isGray = color == 0 || color == 4
        if color == 3 {
            // A palette is gray when every entry is; find PLTE before the data.
            var offset = 33
            isGray = false
            while true {
                let chunk = try file.bytes(at: offset, count: 8, what: "PNG chunk")
                let (length, type) = (u32(chunk, 0), String(decoding: chunk[4..<8], as: UTF8.self))
                if type == "PLTE" {
                    guard length % 3 == 0, length <= 768 else { throw file.corrupt("PNG: invalid palette (PLTE)") }
                    let palette = try file.bytes(at: offset + 8, count: length, what: "PNG palette")
                    isGray = true
                    for entry in stride(from: 0, to: length, by: 3) {
                        let (r, g, b) = (palette[entry], palette[entry + 1], palette[entry + 2])
                        if r != g || r != b { isGray = false }
                    }
                    break
                }
                if type == "IDAT" || type == "IEND" { throw file.corrupt("PNG: a palette image without a palette (PLTE)") }
                guard length <= Int(Int32.max) else { throw file.corrupt("PNG: invalid chunk length") }
                offset += 12 + length
            }
        }
        return ImageHeader(format: .png, width: width, height: height, isGray: isGray, depth: depth == 16 ? 16 : 8)
    }

    private static func jpeg(_ file: HeaderReader) throws -> ImageHeader {
        var offset = 2
        while true {
            var marker = try file.bytes(at: offset, count: 2, what: "JPEG marker")
            guard marker[0] == 0xFF else { throw file.corrupt("JPEG: expected a marker at byte \(offset)") }
            while marker[1] == 0xFF {   // fill bytes
                offset += 1
                marker = try file.bytes(at: offset, count: 2, what: "JPEG marker")
            }
            let m = marker[1]
            if (0xD0...0xD7).contains(m) || m == 0x01 { offset += 2; continue }   // no length
            if m == 0xD9 || m == 0xDA { throw file.corrupt("JPEG: no frame header (SOF) before the image data") }
            let lengthBytes = try file.bytes(at: offset + 2, count: 2, what: "JPEG segment length")
            let length = Int(lengthBytes[0]) << 8 | Int(lengthBytes[1])
            guard length >= 2 else { throw file.corrupt("JPEG: invalid segment length") }
            let isFrame = (0xC0...0xCF).contains(m) && m != 0xC4 && m != 0xC8 && m != 0xCC
            if isFrame {
                let frame = try file.bytes(at: offset + 4, count: 6, what: "JPEG frame header")
                let height = Int(frame[1]) << 8 | Int(frame[2])
                let width = Int(frame[3]) << 8 | Int(frame[4])
                let components = Int(frame[5])
                guard width > 0, height > 0, [1, 3, 4].contains(components) else {
                    throw file.corrupt("JPEG: unsupported frame (\(width) × \(height), \(components) components)")
                }
                return ImageHeader(format: .jpeg, width: width, height: height, isGray: components == 1, depth: 8)
            }
            offset += 2 + length
        }
    }
}

/// Reads byte ranges of a file with pread, buffering its first 4 KiB.
private final class HeaderReader {
    let path: String
    private let fd: Int32
    private let size: Int
    private var head: [UInt8]

    init(path: String) throws {
        self.path = path
        fd = Foundation.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.corrupt(path: path, detail: "cannot be opened (\(String(cString: strerror(errno))))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            Foundation.close(fd)
            throw ImageError.corrupt(path: path, detail: "cannot be read")
        }
        size = Int(st.st_size)
        head = [UInt8](repeating: 0, count: min(size, 4096))
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n == head.count else {
            Foundation.close(fd)
            throw ImageError.corrupt(path: path, detail: "cannot be read")
        }
    }

    func close() { Foundation.close(fd) }

    func corrupt(_ detail: String) -> ImageError { .corrupt(path: path, detail: detail) }

    func bytes(at offset: Int, count: Int, what: String) throws -> [UInt8] {
        guard size > 0 else { throw corrupt("the file is empty") }
        guard offset >= 0, count >= 0, offset + count <= size else {
            throw corrupt("the file ends before its \(what) (truncated, \(size) bytes)")
        }
        if offset + count <= head.count { return Array(head[offset ..< offset + count]) }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        guard n == count else { throw corrupt("cannot read its \(what)") }
        return out
    }
}
