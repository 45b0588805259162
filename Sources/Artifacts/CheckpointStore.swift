import CZlib
import Foundation

/// The checkpoint directory of a run: `step-NNNNNNNN.safetensors` (tensors)
/// with a `step-NNNNNNNN.json` sidecar, and `latest`, a one-line text file
/// naming the newest complete checkpoint's stem; with `--keep-best`, `best`
/// names the one with the lowest test loss.
///
/// Writes are ordered so that a crash or `kill -9` at any moment leaves the
/// previous `latest` (and `best`) loadable: tensors, then sidecar (each
/// written to a temporary file, fsynced and renamed), then the pointers,
/// and only then the removal of checkpoints beyond the retention count,
/// which never removes the one `best` names.
public struct CheckpointStore {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public static func stem(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    public var latestPointer: String { "\(directory)/latest" }
    public var bestPointer: String { "\(directory)/best" }

    /// The stem `best` names, if there is one.
    public func bestStem() -> String? {
        guard Files.exists(bestPointer), let text = try? Files.readText(bestPointer) else { return nil }
        let stem = text.trimmingWhitespace()
        return stem.isEmpty ? nil : stem
    }

    /// Moves `best` to the checkpoint of `step` (which must be complete).
    public func markBest(step: Int) throws {
        try Files.writeAtomically(Self.stem(step: step) + "\n", to: bestPointer)
    }

    /// Writes one checkpoint and moves `latest` to it (and `best`, if
    /// `best`), then keeps only the newest `keep` checkpoints and the best.
    /// Returns the safetensors path.
    @discardableResult
    public func write(step: Int, tensors: SafetensorsFile, sidecar: String, keep: Int, best: Bool = false) throws -> String {
        try Files.createDirectory(directory)
        // Temporary files of a writer killed mid-write are garbage: this
        // process is the directory's only writer.
        for name in try Files.list(directory) where name.contains(".tmp-") {
            try Files.remove("\(directory)/\(name)")
        }
        let stem = Self.stem(step: step)
        let tensorsPath = "\(directory)/\(stem).safetensors"
        try Files.writeAtomically(tensors.encoded(), to: tensorsPath)
        try Files.writeAtomically(sidecar, to: "\(directory)/\(stem).json")
        try Files.writeAtomically(stem + "\n", to: latestPointer)
        if best { try markBest(step: step) }
        try prune(keep: keep, protecting: stem)
        return tensorsPath
    }

    /// Stems of the complete checkpoints present (both files), oldest first.
    public func stems() throws -> [String] {
        guard Files.isDirectory(directory) else { return [] }
        let names = Set(try Files.list(directory))
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".json") }
            .map { String($0.dropLast(5)) }
            .filter { names.contains($0 + ".safetensors") }
            .sorted()
    }

    private func prune(keep: Int, protecting current: String) throws {
        guard keep > 0 else { return }
        let all = try stems()
        let best = bestStem()
        for stem in all.dropLast(keep) where stem != current && stem != best {
            try Files.remove("\(directory)/\(stem).json")
            try Files.remove("\(directory)/\(stem).safetensors")
        }
    }

    /// Resolves what a user passed to `--resume` or `--checkpoint`: a run
    /// directory, a checkpoints directory, a `.safetensors` file or its
    /// `.json` sidecar, or a pointer (`checkpoints/latest`, `checkpoints/best`).
    /// Returns (safetensors path, sidecar path).
    public static func resolve(_ path: String) throws -> (tensors: String, sidecar: String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let name = (p as NSString).lastPathComponent
        if (name == "latest" || name == "best") && Files.exists(p) && !Files.isDirectory(p) {
            let stem = try Files.readText(p).trimmingWhitespace()
            guard !stem.isEmpty, !stem.contains("/") else {
                throw ArtifactError.corrupt(path: p, check: "does not name a checkpoint")
            }
            return try resolve((p as NSString).deletingLastPathComponent + "/\(stem).safetensors")
        }
        if Files.isDirectory(p) {
            let checkpoints = Files.isDirectory("\(p)/checkpoints") ? "\(p)/checkpoints" : p
            let pointer = "\(checkpoints)/latest"
            guard Files.exists(pointer) else {
                if Files.exists("\(p)/config.json") {
                    throw ArtifactError.io(path: pointer, operation: "open",
                                           reason: "the run in \(p) stopped before its first checkpoint, so there is nothing "
                                               + "to resume; train again in the same run directory to start it over")
                }
                throw ArtifactError.io(path: pointer, operation: "open",
                                       reason: "no checkpoint here (expected a `latest` pointer written by vae-mpi)")
            }
            let stem = try Files.readText(pointer).trimmingWhitespace()
            guard !stem.isEmpty, !stem.contains("/") else {
                throw ArtifactError.corrupt(path: pointer, check: "does not name a checkpoint")
            }
            return try resolve("\(checkpoints)/\(stem).safetensors")
        }
        let base: String
        if p.hasSuffix(".safetensors") { base = String(p.dropLast(12)) }
        else if p.hasSuffix(".json") { base = String(p.dropLast(5)) }
        else {
            throw ArtifactError.io(path: p, operation: "open",
                                   reason: "no such checkpoint (give a run directory, a .safetensors file or its .json)")
        }
        let (tensors, sidecar) = (base + ".safetensors", base + ".json")
        for f in [tensors, sidecar] where !Files.exists(f) {
            throw ArtifactError.io(path: f, operation: "open", reason: "no such file (a checkpoint needs both .safetensors and .json)")
        }
        return (tensors, sidecar)
    }
}

/// CRC-32 (zlib's, ISO-HDLC) of a tensor's little-endian bytes, as the
/// checkpoint sidecar records it: "crc32:xxxxxxxx".
public func tensorChecksum(_ scalars: [Float]) -> String {
    let crc = scalars.withUnsafeBytes { raw -> UInt in
        crc32(0, raw.bindMemory(to: UInt8.self).baseAddress, UInt32(raw.count))
    }
    let hex = String(crc, radix: 16)
    return "crc32:" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex
}

/// CRC-32 of bytes, "crc32:xxxxxxxx".
public func byteChecksum(_ bytes: [UInt8]) -> String {
    let crc = bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, UInt32($0.count)) }
    let hex = String(crc, radix: 16)
    return "crc32:" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
