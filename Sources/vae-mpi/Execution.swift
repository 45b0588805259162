import Collectives
import Foundation
import MPICollectives
import TensorCore

/// Runs a subcommand's work on every rank and turns its outcome into the
/// process's exit, the one place errors become exit codes:
///
/// - success: finalize MPI, exit 0;
/// - an error every rank knows about (`CollectiveFailure`, `PeerFailure`):
///   one rank prints it, all finalize and exit 1, nobody hangs;
/// - an error only this rank knows about: print it with the rank and host,
///   then `MPI_Abort`, which ends every rank at once, including those waiting
///   in a collective for this one.
///
/// It also makes the process's math settings before any work: subnormal
/// floats flushed to zero (see `BLAS.flushSubnormalsToZero`) and one BLAS
/// thread per rank unless the work sets another count.
enum Execution {
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
                exit(1)
            }
        } else {
            communicator = LocalCommunicator()
        }
        let rankLabel = communicator.size > 1 ? communicator.rank : nil
        do {
            try work(communicator)
            mpi?.finalize()
            exit(0)
        } catch let failure as CollectiveFailure {
            if failure.reporter { printError(Messages.text(for: failure), rank: failure.concernsRank ? rankLabel : nil) }
            mpi?.finalize()
            exit(1)
        } catch is PeerFailure {
            mpi?.finalize()
            exit(1)
        } catch {
            let host = communicator.size > 1 ? " on \(communicator.hostName)" : ""
            printError(Messages.text(for: error) + host, rank: rankLabel)
            if communicator.size > 1 { communicator.abort(exitCode: 1) }
            exit(1)
        }
    }

    static func printError(_ message: String, rank: Int?) {
        let prefix = rank.map { "vae-mpi: error (rank \($0)): " } ?? "vae-mpi: error: "
        FileHandle.standardError.write(Data((prefix + message + "\n").utf8))
    }
}
