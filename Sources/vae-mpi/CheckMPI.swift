import ArgumentParser
import Collectives
import Foundation
import Training

/// `vae-mpi check-mpi`: does every collective the trainer uses give the
/// right answer across these ranks, and how long do the reductions take?
/// For a new cluster or network before a long run.
struct CheckMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-mpi",
        abstract: "Check every collective across the ranks and time the reductions.",
        discussion: """
            Each rank contributes values known on every rank, so each collective's result is \
            checked exactly (allreduce, reduce-scatter, allgather, broadcast). Then the allreduce, \
            and a reduce-scatter followed by an allgather (the sharded optimizer's pair), are timed \
            at each of \(OptionName.sizes) (floats; the default model's gradient is 652,824): medians of \
            \(OptionName.repeats) calls, the slowest rank counting. Exits 1 if a check fails.

              mpirun -np 4 vae-mpi check-mpi
              mpirun --hostfile hostfiles/cluster -np 64 vae-mpi check-mpi --sizes 1000,652824
            """)

    @Option(name: OptionName.sizes.name, help: ArgumentHelp("Buffer sizes in floats, comma-separated.", valueName: "n,n,…"))
    var sizes: String = "1,1000,100000,652824,4000000"

    @Option(name: OptionName.repeats.name, help: "Timed calls per size.")
    var repeats: Int = 20

    func parsedSizes() throws -> [Int] {
        let values = sizes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw invalid(.sizes, "must be positive integers separated by commas (got \(sizes))")
        }
        return values.map { $0! }
    }

    func validate() throws {
        _ = try parsedSizes()
        try require(repeats, atLeast: 1, .repeats)
    }

    func run() throws {
        let (sizes, repeats) = (try parsedSizes(), repeats)
        Execution.run { communicator in
            let console = Console(rank: communicator.rank)
            let check = CollectiveCheck(communicator)
            console.print("check-mpi: \(communicator.size) rank\(communicator.size == 1 ? "" : "s"), rank 0 on \(communicator.hostName)")
            var failed = 0
            // An odd size too: blocks of unequal length.
            for count in [1, 7, 1000, 1 << 16 + 3] {
                for r in try check.verify(count: count) {
                    if !r.passed { failed += 1 }
                    console.print("  \(r.passed ? "ok  " : "FAIL") \(r.name), \(count) elements\(r.passed ? "" : ": " + r.detail)")
                }
            }
            console.print("  median time per call (µs), slowest rank:")
            for t in try check.time(sizes: sizes, repeats: repeats) {
                let bytes = Double(t.elements * 4)
                let rate = t.seconds > 0 ? String(format: "%.2f GB/s", bytes / t.seconds / 1e9) : "-"
                let name = t.operation.padding(toLength: 28, withPad: " ", startingAt: 0)
                console.print("    \(name)" + String(format: " %10d floats  %10.1f µs", t.elements, t.seconds * 1e6)
                              + "  (\(rate) of buffer per call)")
            }
            if failed > 0 {
                throw CollectiveFailure.unanimous(CheckFailure(count: failed), rank: communicator.rank)
            }
        }
    }

    struct CheckFailure: Error, CustomStringConvertible {
        let count: Int
        var description: String { "\(count) collective check\(count == 1 ? "" : "s") failed" }
    }
}
