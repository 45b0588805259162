import CBLAS
import CFloatControl
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin wrappers over OpenBLAS's row-major `cblas_sgemm`, so that the ops read
/// like the math and the pullbacks pass transposition flags instead of
/// materializing transposes.
public enum BLAS {
    /// Threads OpenBLAS may use in this process. Ranks are the parallelism, so
    /// the trainer sets 1 by default (see DESIGN.md §6).
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(count))
    }

    /// Makes this thread flush subnormal floats to zero (FTZ and DAZ), as
    /// `torch.set_flush_denormal(True)` does. Subnormal arithmetic is two
    /// orders of magnitude slower on x86 and appears late in training.
    public static func flushSubnormalsToZero(_ enabled: Bool = true) {
        float_control_flush_subnormals(enabled ? 1 : 0)
    }

    /// `C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C`, all row-major.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored.
    @inlinable
    public static func gemm(
        transposeA: Bool, transposeB: Bool,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float,
        _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // op(A)·op(B) is empty: C = beta * C.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        let start = KernelTimer.current == nil ? 0 : KernelTimer.now()
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k),
                    alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
        if let timer = KernelTimer.current {
            timer.gemmNanoseconds += KernelTimer.now() - start
            timer.gemmFlops += 2 * m * n * k
        }
    }
}

/// Accumulates the time spent in GEMMs and in im2col/col2im while it is
/// `current` (the profiler of `vae-mpi train --profile`). When no timer is
/// installed (the default) the kernels pay one load and a branch.
public final class KernelTimer: @unchecked Sendable {
    nonisolated(unsafe) public static var current: KernelTimer?

    public var gemmNanoseconds: UInt64 = 0
    public var gemmFlops = 0
    public var im2colNanoseconds: UInt64 = 0

    public init() {}

    @usableFromInline
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Runs `body`, adding its duration to the im2col/col2im total if a timer is installed.
    @inline(__always)
    static func timingIm2col(_ body: () -> Void) {
        guard let timer = current else { return body() }
        let start = now()
        body()
        timer.im2colNanoseconds += now() - start
    }
}
