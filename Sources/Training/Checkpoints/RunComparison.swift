import Artifacts
import Foundation

/// Whether two runs computed the same bits (`vae-mpi compare`): every
/// checkpoint step both runs hold, tensor by tensor (parameters and Adam's
/// moments, by their bit patterns), and metrics.jsonl entry by entry, every
/// value but the timings. A difference is named: the first tensor, element
/// and step, or the first metrics line and key.
public struct RunComparison: Sendable {
    /// Metrics keys that are measurements of time, not results.
    public static let timingKeys: Set<String> = ["samples_per_s", "elapsed_s"]

    public var runs: (String, String)
    /// Checkpoint steps both runs hold, compared; and those only one holds.
    public var commonSteps: [Int] = []
    public var onlyInFirst: [Int] = []
    public var onlyInSecond: [Int] = []
    public var tensorsPerCheckpoint = 0
    public var checkpointDifference: String? = nil
    public var metricsEntries = (0, 0)
    public var metricsDifference: String? = nil

    public var equal: Bool { checkpointDifference == nil && metricsDifference == nil }

    public init(_ a: String, _ b: String) throws {
        runs = (a, b)
        try compareCheckpoints()
        try compareMetrics()
    }

    static func steps(_ run: String) throws -> [Int: String] {
        let directory = "\(run)/checkpoints"
        guard Files.isDirectory(run) else { throw ArtifactError.io(path: run, operation: "open the run directory", reason: "no such directory") }
        let stems = try CheckpointStore(directory: directory).stems()
        var steps: [Int: String] = [:]
        for stem in stems { if let step = Int(stem.dropFirst(5)) { steps[step] = "\(directory)/\(stem).safetensors" } }
        return steps
    }

    mutating func compareCheckpoints() throws {
        let (a, b) = (try Self.steps(runs.0), try Self.steps(runs.1))
        commonSteps = Set(a.keys).intersection(b.keys).sorted()
        onlyInFirst = Set(a.keys).subtracting(b.keys).sorted()
        onlyInSecond = Set(b.keys).subtracting(a.keys).sorted()
        guard !commonSteps.isEmpty else {
            checkpointDifference = "no checkpoint step in common (\(runs.0): \(Self.list(a.keys.sorted())); "
                + "\(runs.1): \(Self.list(b.keys.sorted())))"
            return
        }
        for step in commonSteps {
            // Checkpoint(path:) verifies each file's checksums first.
            let (x, y) = (try Checkpoint(path: a[step]!).tensors, try Checkpoint(path: b[step]!).tensors)
            tensorsPerCheckpoint = x.entries.count
            if let difference = Self.firstDifference(x, y) {
                checkpointDifference = "step \(step): \(difference)"
                return
            }
        }
    }

    static func firstDifference(_ x: SafetensorsFile, _ y: SafetensorsFile) -> String? {
        let (xNames, yNames) = (x.entries.map(\.name), y.entries.map(\.name))
        if xNames != yNames {
            let missing = Set(xNames).symmetricDifference(yNames).sorted()
            return missing.isEmpty ? "the tensors are in another order"
                : "tensor \(missing[0]) is in only one of the two checkpoints"
        }
        for (p, q) in zip(x.entries, y.entries) {
            if p.shape != q.shape { return "tensor \(p.name) has shape \(p.shape) in one, \(q.shape) in the other" }
            var count = 0, first: Int? = nil
            for i in p.scalars.indices where p.scalars[i].bitPattern != q.scalars[i].bitPattern {
                count += 1
                if first == nil { first = i }
            }
            if let first {
                return "tensor \(p.name) differs in \(count) of \(p.scalars.count) elements; the first is "
                    + "\(index(first, shape: p.shape)): \(p.scalars[first]) against \(q.scalars[first])"
            }
        }
        return nil
    }

    /// The multi-index of flat position `i` in `shape`, as "[2, 17]".
    static func index(_ i: Int, shape: [Int]) -> String {
        var rest = i, parts: [Int] = []
        for extent in shape.reversed() {
            parts.append(rest % max(extent, 1))
            rest /= max(extent, 1)
        }
        return "[" + parts.reversed().map(String.init).joined(separator: ", ") + "]"
    }

    static func metrics(_ run: String) throws -> [[String: Any]] {
        let path = "\(run)/metrics.jsonl"
        return try Files.readText(path).split(separator: "\n").enumerated().map { n, line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw ArtifactError.corrupt(path: path, check: "line \(n + 1) is not a JSON object")
            }
            return object.filter { !timingKeys.contains($0.key) }
        }
    }

    mutating func compareMetrics() throws {
        let (a, b) = (try Self.metrics(runs.0), try Self.metrics(runs.1))
        metricsEntries = (a.count, b.count)
        for (n, (x, y)) in zip(a, b).enumerated() {
            let label = "line \(n + 1) (\(x["type"] ?? "?"), step \(x["step"] ?? "?"))"
            if !Self.bitwiseEqual(x["type"], y["type"]) || !Self.bitwiseEqual(x["step"], y["step"]) {
                metricsDifference = "line \(n + 1) is \(x["type"] ?? "?") at step \(x["step"] ?? "?") in \(runs.0), "
                    + "\(y["type"] ?? "?") at step \(y["step"] ?? "?") in \(runs.1)"
                return
            }
            for key in Set(x.keys).union(y.keys).sorted() {
                let (u, v) = (x[key], y[key])
                if !Self.bitwiseEqual(u, v) {
                    metricsDifference = "\(label): \(key) is \(Self.describe(u)) against \(Self.describe(v))"
                    return
                }
            }
        }
        if a.count != b.count {
            let (longer, name) = a.count > b.count ? (a, runs.0) : (b, runs.1)
            let extra = longer[min(a.count, b.count)]
            metricsDifference = "\(name) has \(abs(a.count - b.count)) more entries, from line \(min(a.count, b.count) + 1) "
                + "(\(extra["type"] ?? "?"), step \(extra["step"] ?? "?"))"
        }
    }

    static func bitwiseEqual(_ u: Any?, _ v: Any?) -> Bool {
        switch (u, v) {
        case (nil, nil): return true
        case let (p as NSNumber, q as NSNumber):
            return p.doubleValue.bitPattern == q.doubleValue.bitPattern || (p.doubleValue.isNaN && q.doubleValue.isNaN)
        case let (p as String, q as String): return p == q
        case let (p as [Any], q as [Any]):
            return p.count == q.count && zip(p, q).allSatisfy { bitwiseEqual($0, $1) }
        case let (p as [String: Any], q as [String: Any]):
            return Set(p.keys) == Set(q.keys) && p.keys.allSatisfy { bitwiseEqual(p[$0], q[$0]) }
        case (is NSNull, is NSNull): return true
        default: return false
        }
    }

    static func describe(_ value: Any?) -> String {
        guard let value else { return "absent" }
        if let array = value as? [Any] { return "[" + array.prefix(4).map { describe($0) }.joined(separator: ", ") + (array.count > 4 ? ", …]" : "]") }
        return "\(value)"
    }

    static func list(_ steps: [Int]) -> String {
        steps.isEmpty ? "none" : steps.map(String.init).joined(separator: ", ")
    }

    /// What `vae-mpi compare` prints.
    public var report: [String] {
        var lines: [String] = []
        if let checkpointDifference {
            lines.append("checkpoints: \(checkpointDifference)")
        } else {
            lines.append("checkpoints: \(commonSteps.count) step\(commonSteps.count == 1 ? "" : "s") in both "
                         + "(\(Self.list(commonSteps))), \(tensorsPerCheckpoint) tensors each (parameters and Adam's moments): "
                         + "bitwise equal")
        }
        if !onlyInFirst.isEmpty { lines.append("  only in \(runs.0): steps \(Self.list(onlyInFirst)) (not compared)") }
        if !onlyInSecond.isEmpty { lines.append("  only in \(runs.1): steps \(Self.list(onlyInSecond)) (not compared)") }
        if let metricsDifference {
            lines.append("metrics: \(metricsDifference)")
        } else {
            lines.append("metrics: \(metricsEntries.0) entries, bitwise equal (timings excepted)")
        }
        lines.append(equal ? "\(runs.0) and \(runs.1) are bitwise equal" : "\(runs.0) and \(runs.1) differ")
        return lines
    }
}
