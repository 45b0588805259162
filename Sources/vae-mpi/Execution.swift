import Collectives
import Foundation
import MPICollectives
import TensorCore
import Training

/// Runs a subcommand's work on every rank and turns its outcome into the
/// process's exit, the one place errors become exit codes (`ExitStatus`):
///
/// - success: finalize MPI, exit 0;
/// - an error every rank knows about (`CollectiveFailure`, `PeerFailure`):
///   one rank prints it, all finalize and exit 2 (a user error: the same
///   input fails the same way, so restarting does not help);
/// - an error only this rank knows about: print it with the rank and host,
///   then `MPI_Abort` with 3, which ends every rank at once, including those
///   waiting in a collective for this one (restartable);
/// - a stop request (SIGTERM, SIGINT) honoured with a checkpoint: exit 75,
///   "interrupted, resumable", after printing the resume command.
///
/// It also makes the process's math settings before any work: subnormal
/// floats flushed to zero (see `BLAS.flushSubnormalsToZero`) and one BLAS
/// thread per rank unless the work sets another count.
/// The exit statuses of vae-mpi (also in README, *Exit status*).
enum ExitStatus {
    static let success: Int32 = 0
    /// Every rank agrees the input is wrong (options, data, checkpoint).
    static let userError: Int32 = 2
    /// One rank failed (or MPI did): the job was aborted; restarting may help.
    static let rankFailure: Int32 = 3
    /// The stall watchdog found a collective waiting past --collective-timeout.
    static let stalled: Int32 = 4
    /// A signal stopped training after a checkpoint: resume it.
    static let interrupted: Int32 = 75
}

enum Execution {
    /// Seconds a collective may wait before the stall watchdog ends the job (0: no watchdog).
    nonisolated(unsafe) static var collectiveTimeout = 600.0

    /// `VAE_MPI_EXIT_RECORD=PREFIX` (set by scripts/lib/supervise.sh): each
    /// rank writes its exit status to PREFIX.RANK as it exits, so that a
    /// supervisor can tell that the ranks have ended when mpirun itself does
    /// not return (it waits for the daemon of a node it cannot reach).
    nonisolated(unsafe) static var exitRecord: [CChar]? = nil

    /// Writes the exit record, if asked for (open/write/close only: also
    /// called from the watchdog thread just before `_exit`).
    static func recordExit(_ status: Int32) {
        guard let path = exitRecord else { return }
        let fd = path.withUnsafeBufferPointer { open($0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { return }
        var text = Array("\(status)\n".utf8)
        _ = text.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    static func exit(_ status: Int32) -> Never {
        recordExit(status)
        Foundation.exit(status)
    }

    static func run(_ work: (Communicator) throws -> Void) -> Never {
        BLAS.flushSubnormalsToZero()
        BLAS.setThreads(1)
        let communicator: Communicator
        var mpi: MPICommunicator? = nil
        if Launcher.isMPI {
            do {
                mpi = try MPICommunicator()
                communicator = mpi!
            } catch {
                printError(Messages.text(for: error), rank: nil)
                exit(ExitStatus.rankFailure)
            }
        } else {
            communicator = LocalCommunicator()
        }
        let rankLabel = communicator.size > 1 ? communicator.rank : nil
        if let prefix = ProcessInfo.processInfo.environment["VAE_MPI_EXIT_RECORD"], !prefix.isEmpty {
            exitRecord = Array("\(prefix).\(communicator.rank)".utf8CString)
        }
        if let mpi, communicator.size > 1, collectiveTimeout > 0 {
            // A stalled collective: the report, then status 4, which makes mpirun end the job.
            let rank = mpi.rank
            let watchdog = CollectiveWatchdog(timeout: collectiveTimeout, rank: rank, host: mpi.hostName) { report in
                let line = "vae-mpi: error (rank \(rank)): " + report + "\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
                Execution.recordExit(ExitStatus.stalled)
                _exit(ExitStatus.stalled)
            }
            mpi.watchdog = watchdog
            watchdog.start()
        }
        do {
            try work(communicator)
            mpi?.finalize()
            exit(0)
        } catch let interrupted as RunInterrupted {
            if communicator.rank == 0 {
                let launcher = communicator.size > 1 ? "mpirun -np \(communicator.size) " : ""
                FileHandle.standardError.write(Data(("vae-mpi: \(interrupted); resume with:\n    \(launcher)"
                    + "\(CommandLine.arguments[0]) train --resume \(interrupted.runDirectory)\n").utf8))
            }
            mpi?.finalize()
            exit(ExitStatus.interrupted)
        } catch let failure as CollectiveFailure {
            if failure.reporter { printError(Messages.text(for: failure), rank: failure.concernsRank ? rankLabel : nil) }
            mpi?.finalize()
            exit(ExitStatus.userError)
        } catch is PeerFailure {
            mpi?.finalize()
            exit(ExitStatus.userError)
        } catch {
            let host = communicator.size > 1 ? " on \(communicator.hostName)" : ""
            printError(Messages.text(for: error) + host, rank: rankLabel)
            if communicator.size > 1 {
                recordExit(ExitStatus.rankFailure)
                communicator.abort(exitCode: ExitStatus.rankFailure)
            }
            exit(ExitStatus.userError)
        }
    }

    static func printError(_ message: String, rank: Int?) {
        let prefix = rank.map { "vae-mpi: error (rank \($0)): " } ?? "vae-mpi: error: "
        FileHandle.standardError.write(Data((prefix + message + "\n").utf8))
    }
}
