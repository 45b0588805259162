import ArgumentParser
import Foundation
import Training

/// `vae-mpi compare RUN_A RUN_B`: are two runs bitwise equal? For checking
/// a `--reproducible` run on a cluster against a one-process run, or a
/// refactor against the build before it.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Report whether two runs' checkpoints and metrics are bitwise equal.",
        discussion: """
            Compares every checkpoint step both run directories hold, tensor by tensor (parameters \
            and Adam's moments, bit for bit), and metrics.jsonl line by line (every value but the \
            timings, samples_per_s and elapsed_s). A difference is named: the first differing \
            tensor, element and step, or the first differing line and key. Exits 0 when the runs \
            are bitwise equal, 1 when they differ, 2 when a run cannot be read.

              vae-mpi compare runs/np1 runs/np4
            """)

    @Argument(help: ArgumentHelp("The first run directory.", valueName: "run-a"))
    var first: String

    @Argument(help: ArgumentHelp("The second run directory.", valueName: "run-b"))
    var second: String

    func run() throws {
        let (a, b) = (first, second)
        Execution.run { communicator in
            let comparison = try RunComparison(a, b)
            guard communicator.rank == 0 else { return }
            FileHandle.standardOutput.write(Data((comparison.report.joined(separator: "\n") + "\n").utf8))
            if !comparison.equal { Foundation.exit(1) }
        }
    }
}
