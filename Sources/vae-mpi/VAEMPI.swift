import ArgumentParser
import Collectives
import CMalloc
import Foundation
import MPICollectives

/// `vae-mpi`: data-parallel VAE training over MPI. `train` is the default
/// subcommand, so `mpirun -np 4 vae-mpi` trains with the defaults.
@main
struct VAEMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae-mpi",
        abstract: "Train variational autoencoders on CPU nodes, data-parallel over MPI.",
        discussion: """
            Start it under mpirun for several ranks (each rank holds a model replica and a \
            shard of the data), or directly for one:

              mpirun -np 4 vae-mpi train --epochs 10
              vae-mpi train --max-steps 200

            As root, mpirun needs --allow-run-as-root; more ranks than cores need --oversubscribe.
            """,
        version: "0.1.0",
        subcommands: [Train.self, Sample.self, Reconstruct.self, Encode.self, Interpolate.self, Evaluate.self,
                      Inspect.self, LatentMap.self, Score.self, Impute.self, Inpaint.self, Recommend.self, Compress.self, Decompress.self, ExportData.self, CheckMPI.self, GemmRate.self,
                      Compare.self],
        defaultSubcommand: Train.self)

    /// Parses on every rank but lets only rank 0 print usage errors and help,
    /// so a bad option under `mpirun -np 64` prints one message, not 64.
    static func main() {
        keepFreedMemory()
        let rank = Launcher.rank ?? 0
        var parsed = false
        do {
            var command = try parseAsRoot()
            parsed = true
            try command.run()
        } catch {
            if rank == 0 { exit(reporting: error) }
            let code = exitCode(for: error)
            // A usage error fails the same way on rank 0, which says why.
            // mpirun stops the job when a rank fails: exiting at once here could
            // stop rank 0 before it had printed (or even parsed, if it started later).
            if !parsed && code != .success { Thread.sleep(forTimeInterval: 2) }
            Foundation.exit(code.rawValue)
        }
    }

    /// `exit(withError:)`, but an error's message goes to standard error in
    /// one write: ArgumentParser's own print wrote it a character at a time,
    /// so under mpirun the notice that another rank had failed could land in
    /// the middle of the line. Help and the version are printed as before.
    static func exit(reporting error: Error) -> Never {
        let code = exitCode(for: error)
        let text = fullMessage(for: error)
        guard code != .success else { exit(withError: error) }
        if !text.isEmpty { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        Foundation.exit(code.rawValue)
    }
}

/// Every training step allocates the same large temporaries (activations,
/// im2col matrices of several MB, gradients) and frees them again. glibc
/// serves blocks above its mmap threshold with fresh mappings and trims the
/// heap's free top, so each step page-faulted its memory back in: a fifth of
/// a conv VAE step went to the kernel's page-fault path. Raising both
/// thresholds keeps the freed memory in the process for the next step (the
/// footprint stays at one step's peak).
func keepFreedMemory() {
    malloc_control_keep_freed_memory()
}
