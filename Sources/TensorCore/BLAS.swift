import CBLAS
import CFloatControl

/// Process-wide settings of the CPU math libraries. The executable sets
/// them once at start (docs/ARCHITECTURE.md, "Targets": libraries hold no global state and do
/// not change the process's).
public enum BLAS {
    /// Threads the kernel libraries (OpenBLAS, and oneDNN through OpenMP) may
    /// use in this process. Ranks are the parallelism, so vae-mpi uses 1 by
    /// default (docs/ARCHITECTURE.md, "One training step").
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(count))
        DNNLContext.setThreads(count)
        threads = count
    }

    /// The count last set, or nil before any (the libraries' own default:
    /// one thread per core). `Backend.narrowMatmul` runs its one-thread
    /// kernels only at 1: with more, oneDNN splits long sums across threads.
    public private(set) nonisolated(unsafe) static var threads: Int?

    /// Makes this thread flush subnormal floats to zero (FTZ and DAZ), as
    /// `torch.set_flush_denormal(True)` does. Subnormal arithmetic is two
    /// orders of magnitude slower on x86 and appears late in training.
    public static func flushSubnormalsToZero(_ enabled: Bool = true) {
        float_control_flush_subnormals(enabled ? 1 : 0)
    }
}
