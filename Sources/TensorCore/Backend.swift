import CBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the kernels of matrix products and convolutions run. Every op that
/// calls a kernel library takes one (`on backend:`), so nothing about
/// execution is global: a profiler, scratch sizes, later the kernel library
/// and precision, travel with the call.
///
/// `gemm` is the one matrix-product entry point of the package.
public struct Backend: @unchecked Sendable {
    /// Accumulates kernel times while set (`vae-mpi train --profile`).
    public var profiler: KernelProfiler?
    /// Floats of im2col matrix per chunk of a convolution's batch: 768 KB, a
    /// part of a 2 MB L2 (see `ConvKernels`). Tests lower it to force many
    /// small chunks.
    public var convolutionColumnBudget: Int

    public init(profiler: KernelProfiler? = nil, convolutionColumnBudget: Int = 196_608) {
        self.profiler = profiler
        self.convolutionColumnBudget = max(1, convolutionColumnBudget)
    }

    /// The same backend without a profiler (for work outside the measured steps).
    public var unprofiled: Backend {
        var b = self
        b.profiler = nil
        return b
    }

    /// `C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C`, all row-major,
    /// through OpenBLAS's `cblas_sgemm`; the pullbacks pass transposition
    /// flags instead of materializing transposes. `lda`, `ldb`, `ldc` are the
    /// row strides of A, B, C as stored.
    @inlinable
    public func gemm(
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
        let start = profiler == nil ? 0 : KernelProfiler.now()
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k),
                    alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
        if let profiler {
            profiler.gemmNanoseconds += KernelProfiler.now() - start
            profiler.gemmFlops += 2 * m * n * k
        }
    }

    /// Runs `body`, adding its duration to the profiler's im2col/col2im total.
    @inline(__always)
    func timingIm2col(_ body: () -> Void) {
        guard let profiler else { return body() }
        let start = KernelProfiler.now()
        body()
        profiler.im2colNanoseconds += KernelProfiler.now() - start
    }
}

/// Time spent in GEMMs and in im2col/col2im by the ops run on a backend
/// that holds this profiler. Without one (the default) the kernels pay one
/// load and a branch.
public final class KernelProfiler: @unchecked Sendable {
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
}
