import ArgumentParser
import Collectives
import Foundation
import TensorCore
import Training

/// `vae-mpi gemm-rate`: this machine's matrix-product rate with the kernels
/// training uses, the yardstick for a step's kernel time. Every rank
/// multiplies two N×N matrices over and over at the same time as the others,
/// so under `mpirun -np <cores>` the sum is what all cores give together.
struct GemmRate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm-rate",
        abstract: "Measure the matrix-product rate of the training kernels on this machine.",
        discussion: """
            Each rank runs C = A·B on \(OptionName.size)×\(OptionName.size) matrices with oneDNN's \
            matmul (the primitive training uses), in each precision asked for, for at least \
            \(OptionName.seconds) seconds after a warm-up call, all ranks at once; it prints each \
            rank's GFLOP/s and their sum, and one GEMM {json} line for scripts (scripts/bench.sh \
            divides a model's samples/s by the sum over the kernel work per sample: the GEMM-only bound).

              mpirun -np 2 vae-mpi gemm-rate                 # one thread per rank, as training
              vae-mpi gemm-rate --threads 2 --precision bf16
            """)

    @Option(name: OptionName.size.name, help: "Rows and columns of the matrices.")
    var size: Int = 2048

    @Option(name: OptionName.precision.name, help: ArgumentHelp("Precisions, comma-separated.", valueName: "fp32,bf16"))
    var precision: String = "fp32,bf16"

    @Option(name: OptionName.threads.name, help: "Kernel threads per rank.")
    var threads: Int = 1

    @Option(name: OptionName.seconds.name, help: "Seconds of timed products per precision, at least.")
    var seconds: Double = 2

    func precisions() throws -> [Precision] {
        let values = precision.split(separator: ",").map { Precision(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
            throw invalid(.precision, "must be fp32, bf16 or both, comma-separated (got \(precision))")
        }
        return values.map { $0! }
    }

    func validate() throws {
        _ = try precisions()
        try require(size, atLeast: 16, .size)
        guard size <= 8192 else { throw invalid(.size, "must be at most 8192 (got \(size)): three matrices of size² floats per rank") }
        try require(threads, atLeast: 1, .threads)
        guard seconds > 0, seconds <= 600 else { throw invalid(.seconds, "must be in (0, 600] (got \(seconds))") }
    }

    func run() throws {
        let (precisions, n, threads, seconds) = (try precisions(), size, threads, seconds)
        Execution.run { communicator in
            BLAS.setThreads(threads)
            let console = Console(rank: communicator.rank)
            console.print("gemm-rate: \(n)×\(n)·\(n)×\(n), oneDNN, \(plural(communicator.size, "rank")) × "
                          + "\(plural(threads, "thread")), at least \(seconds) s each")
            var rng = SystemRandomNumberGenerator()
            let a = Tensor(shape: [n, n], scalars: (0..<n * n).map { _ in Float.random(in: -1...1, using: &rng) })
            let b = Tensor(shape: [n, n], scalars: (0..<n * n).map { _ in Float.random(in: -1...1, using: &rng) })
            var c = [Float](repeating: 0, count: n * n)
            let flops = 2 * Double(n) * Double(n) * Double(n)
            for precision in precisions {
                // A precision this CPU cannot run stops every rank alike.
                let backend = try communicator.collectively { try Backend(library: .onednn, precision: precision) }
                let (pa, pb) = (backend.operand(a, rows: n, columns: n), backend.operand(b, rows: n, columns: n))
                func multiply() {
                    c.withUnsafeMutableBufferPointer {
                        backend.matmul(pa, transposed: false, pb, transposed: false, into: $0.baseAddress!, ldc: n)
                    }
                }
                multiply()
                try communicator.barrier()
                let start = Date()
                var calls = 0
                repeat {
                    multiply()
                    calls += 1
                } while calls < 3 || Date().timeIntervalSince(start) < seconds
                let rate = flops * Double(calls) / Date().timeIntervalSince(start)
                let rates = try communicator.allGather(rate.bitPattern).map { Double(bitPattern: $0) / 1e9 }
                let total = rates.reduce(0, +)
                console.print("  \(precision.rawValue): " + String(format: "%.1f GFLOP/s", total)
                              + (rates.count > 1 ? " (ranks: " + rates.map { String(format: "%.1f", $0) }.joined(separator: ", ") + ")" : ""))
                console.print("GEMM {\"precision\": \"\(precision.rawValue)\", \"size\": \(n), \"ranks\": \(communicator.size), "
                              + "\"threads\": \(threads), \"gflops\": \(String(format: "%.1f", total))}")
            }
        }
    }
}
