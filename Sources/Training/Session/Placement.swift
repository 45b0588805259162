import Foundation

/// Where a rank may run: the cores its affinity mask allows (Linux
/// `Cpus_allowed_list` of /proc/self/status, which `sched_getaffinity`
/// reports too). Open MPI binds each rank to one core when np ≤ 2 (to a
/// socket above): `--threads 2` there runs both threads on one core, at
/// about half the speed, and nothing else says so.
public struct Placement: Equatable, Sendable {
    /// The allowed cores' ids, in order.
    public var cores: [Int]

    public init(cores: [Int]) { self.cores = cores }

    /// This process's placement, or nil where the system does not say.
    public static func current() -> Placement? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return nil }
        return parse(String(line.dropFirst("Cpus_allowed_list:".count)))
    }

    /// "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11].
    public static func parse(_ list: String) -> Placement? {
        var cores: [Int] = []
        for part in list.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let bounds = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            if bounds.count == 1, let a = bounds[0] {
                cores.append(a)
            } else if bounds.count == 2, let a = bounds[0], let b = bounds[1], a <= b {
                cores += Array(a...b)
            } else {
                return nil
            }
        }
        return cores.isEmpty ? nil : Placement(cores: cores)
    }

    /// "cores 0-3,8" (runs of consecutive ids folded).
    public var summary: String {
        var runs: [String] = []
        var i = 0
        while i < cores.count {
            var j = i
            while j + 1 < cores.count && cores[j + 1] == cores[j] + 1 { j += 1 }
            runs.append(i == j ? "\(cores[i])" : "\(cores[i])-\(cores[j])")
            i = j + 1
        }
        return (cores.count == 1 ? "core " : "cores ") + runs.joined(separator: ",")
    }
}

/// `--threads` above the cores a rank may use: its threads would share cores.
public struct SharedCoresError: Error, CustomStringConvertible, Equatable {
    public var rank: Int
    public var threads: Int
    public var placement: Placement

    public var description: String {
        "--threads \(threads): rank \(rank) may run only on \(placement.summary) (its affinity mask; Open MPI binds a rank "
            + "to one core when np ≤ 2), so its \(threads) kernel threads would share "
            + (placement.cores.count == 1 ? "that core" : "\(placement.cores.count) cores")
            + " and run at a fraction of their speed. Launch with `mpirun --map-by slot:PE=\(threads) --bind-to core` "
            + "(\(threads) cores per rank), or `--bind-to none`, or `THREADS=\(threads) scripts/train.sh`; "
            + "--allow-shared-cores runs anyway"
    }
}
