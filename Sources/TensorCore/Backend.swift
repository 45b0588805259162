import CBLAS
import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kernel library behind matrix products and convolutions.
public enum KernelLibrary: String, Codable, CaseIterable, Sendable {
    /// oneDNN (Debian's libdnnl): brgemm matmuls, jit convolutions; bf16 capable.
    case onednn
    /// OpenBLAS sgemm, convolutions by im2col: fp32 only; kept to compare with.
    case openblas
}

/// The number format of the inputs of matrix products and convolutions.
/// Accumulation, master parameters, gradients, optimizer state, losses,
/// reductions and checkpoints are fp32 in both.
public enum Precision: String, Codable, CaseIterable, Sendable {
    case fp32
    /// bfloat16 inputs (8-bit significand), fp32 accumulation and outputs.
    case bf16

    /// Relative rounding error of one input: 2⁻⁹ for bf16 (8 stored
    /// significand bits, round to nearest), 2⁻²⁴ for fp32.
    public var unitRoundoff: Float { self == .bf16 ? 1.0 / 512 : 1.0 / 16_777_216 }
}

/// Why a backend cannot be made on this machine.
public enum BackendError: Error, CustomStringConvertible, Equatable {
    case bf16Unsupported(cpu: String)
    case bf16NeedsOneDNN

    public var description: String {
        switch self {
        case let .bf16Unsupported(cpu):
            return "bf16 needs native bfloat16 instructions (AVX512_BF16 or AMX-BF16), which this CPU (\(cpu)) lacks; "
                + "emulated bf16 would be several times slower than fp32, so use fp32"
        case .bf16NeedsOneDNN:
            return "bf16 runs on the oneDNN kernels only; OpenBLAS has no bf16 GEMM"
        }
    }
}

/// How the kernels of matrix products and convolutions run. Every op that
/// calls a kernel library takes one (`on backend:`), so nothing about
/// execution is global: the library and its cached primitives, the
/// precision, a profiler, a gradient sink travel with the call.
///
/// `matmul` is the package's one matrix-product entry point.
public struct Backend: @unchecked Sendable {
    public let library: KernelLibrary
    public let precision: Precision
    /// Accumulates kernel times while set (`vae-mpi train --profile`).
    public var profiler: KernelProfiler?
    /// Where parameter gradients go, when a trainer provides one (see `GradientSink`).
    public var gradientSink: GradientSink?
    /// OpenBLAS convolutions: floats of im2col matrix per chunk of the batch
    /// (768 KB, a part of a 2 MB L2). Tests lower it to force many chunks.
    public var convolutionColumnBudget: Int
    /// Whether `narrowMatmul` may run its own kernels (tests turn it off to
    /// compare them with oneDNN's through the ops).
    var narrowKernels = true
    let dnnl: DNNLContext?

    /// Throws `BackendError` for bf16 on a CPU without native bf16 (`cpu`:
    /// this machine's features, or others for tests), or on OpenBLAS.
    public init(library: KernelLibrary = .onednn, precision: Precision = .fp32, profiler: KernelProfiler? = nil,
                convolutionColumnBudget: Int = 196_608, cpu: CPU.Features = .current) throws {
        if precision == .bf16 {
            guard library == .onednn else { throw BackendError.bf16NeedsOneDNN }
            guard cpu.nativeBF16 else { throw BackendError.bf16Unsupported(cpu: cpu.modelName) }
        }
        self.library = library
        self.precision = precision
        self.profiler = profiler
        self.convolutionColumnBudget = max(1, convolutionColumnBudget)
        dnnl = library == .onednn ? try DNNLContext() : nil
    }

    /// The same backend without a profiler or gradient sink (for work outside the measured steps).
    public var unprofiled: Backend {
        var b = self
        b.profiler = nil
        b.gradientSink = nil
        return b
    }

    /// "onednn fp32".
    public var summary: String { "\(library.rawValue) \(precision.rawValue)" }

    var bf16: Bool { precision == .bf16 }

    // MARK: - matrix products

    /// A row-major matrix as the backend's products take it: the f32
    /// values, or their bf16 rounding (converted once, used by forward and
    /// backward alike).
    public struct MatrixOperand {
        public let rows: Int
        public let columns: Int
        let values: Tensor
        let rounded: [UInt16]?

        func withPointer<R>(_ body: (UnsafeRawPointer) -> R) -> R {
            if let rounded { return rounded.withUnsafeBytes { body($0.baseAddress!) } }
            return values.scalars.withUnsafeBytes { body($0.baseAddress!) }
        }
    }

    /// `tensor`'s elements as a rows × columns matrix.
    public func operand(_ tensor: Tensor, rows: Int, columns: Int) -> MatrixOperand {
        precondition(rows * columns == tensor.count, "operand: \(tensor.shape) is not \(rows)×\(columns)")
        guard bf16 else { return MatrixOperand(rows: rows, columns: columns, values: tensor, rounded: nil) }
        return MatrixOperand(rows: rows, columns: columns, values: tensor, rounded: roundedToBF16(tensor.scalars))
    }

    /// bf16 rounding of `values` (timed as layout work).
    func roundedToBF16(_ values: [Float]) -> [UInt16] {
        timingLayout {
            [UInt16](unsafeUninitializedCapacity: values.count) { out, n in
                values.withUnsafeBufferPointer { ck_f32_to_bf16($0.baseAddress, out.baseAddress, values.count) }
                n = values.count
            }
        }
    }

    /// `matmul` for the few-channel convolutions' products, which have one
    /// narrow dimension (the im2col matrix's C·kh·kw columns, or a weight
    /// gradient's few outputs summed over many positions). In bf16 they run
    /// CKernels' `ck_bf16_gemm_tn_narrow` (C = Aᵀ·B with M ≤ 64 and N ≤ 32)
    /// and `ck_bf16_gemm_narrow_k` (C = A·op(B) with K ≤ 64 and N ≤ 64, bias
    /// and ReLU in its epilogue): the bits of oneDNN's matmul on these
    /// shapes with one kernel thread, at up to twice its rate (kernels.h).
    /// Anything else, and any product when the kernel libraries may use more
    /// than one thread (`BLAS.threads`), is `matmul`.
    func narrowMatmul(_ a: MatrixOperand, transposed transposeA: Bool, _ b: MatrixOperand, transposed transposeB: Bool,
                      into c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
                      relu: Bool = false) {
        let (m, k) = transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
        let n = transposeB ? b.rows : b.columns
        precondition(k == (transposeB ? b.columns : b.rows), "matmul: inner dimensions \(k) and \(transposeB ? b.columns : b.rows) differ")
        // Aᵀ·B with few outputs (a weight gradient), or A·op(B) with a short k.
        let weightGradient = transposeA && !transposeB && m <= 64 && n <= 32 && bias == nil && !relu
        let shortK = !transposeA && k <= 64 && n <= 64
        guard bf16, narrowKernels, dnnl != nil, BLAS.threads == 1, weightGradient || shortK,
              let ra = a.rounded, let rb = b.rounded, m > 0, n > 0, k > 0 else {
            return matmul(a, transposed: transposeA, b, transposed: transposeB, into: c, ldc: ldc, bias: bias, relu: relu)
        }
        timingKernel(flops: 2 * m * n * k, "narrow \(m)×\(k)\(transposeA ? "ᵀ" : "")·\(k)×\(n)\(transposeB ? "ᵀ" : "")") {
            ra.withUnsafeBufferPointer { pa in
                rb.withUnsafeBufferPointer { pb in
                    if weightGradient {
                        ck_bf16_gemm_tn_narrow(pa.baseAddress, k, m, a.columns, pb.baseAddress, n, b.columns, c, ldc)
                    } else {
                        ck_bf16_gemm_narrow_k(pa.baseAddress, m, k, pb.baseAddress, transposeB ? 1 : b.columns,
                                              transposeB ? b.columns : 1, n, bias, relu ? 1 : 0, c, ldc)
                    }
                }
            }
        }
    }

    /// C (M, N) = op(A) · op(B), with op(X) = Xᵀ when `transposed`, plus
    /// `bias` (N) on every row, then ReLU; or, with `accumulate`, C += op(A)·op(B).
    /// C is row-major with row stride `ldc`.
    public func matmul(_ a: MatrixOperand, transposed transposeA: Bool, _ b: MatrixOperand, transposed transposeB: Bool,
                       into c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
                       relu: Bool = false, accumulate: Bool = false) {
        let (m, k) = transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
        let (kb, n) = transposeB ? (b.columns, b.rows) : (b.rows, b.columns)
        precondition(k == kb, "matmul: inner dimensions \(k) and \(kb) differ")
        precondition(!(accumulate && (bias != nil || relu)), "matmul: accumulate goes without bias and ReLU")
        if m == 0 || n == 0 { return }
        if k == 0 {
            // op(A)·op(B) is empty: C = bias (or kept, when accumulating).
            if !accumulate {
                for i in 0..<m { for j in 0..<n { c[i * ldc + j] = relu ? max(bias?[j] ?? 0, 0) : (bias?[j] ?? 0) } }
            }
            return
        }
        // Made once per shape, before the clock starts: creation JIT-compiles the kernel.
        let primitive = dnnl.map {
            $0.matmul(MatmulKey(m: m, n: n, k: k, lda: a.columns, ldb: b.columns, ldc: ldc,
                                transposeA: transposeA, transposeB: transposeB, bf16: bf16,
                                bias: bias != nil, relu: relu, accumulate: accumulate))
        }
        let start = profiler == nil ? 0 : KernelProfiler.now()
        if let primitive {
            a.withPointer { pa in b.withPointer { pb in primitive.run(a: pa, b: pb, bias: bias, c: c) } }
        } else {
            if let bias, !accumulate {
                for i in 0..<m { (c + i * ldc).update(from: bias, count: n) }
            }
            a.values.scalars.withUnsafeBufferPointer { pa in
                b.values.scalars.withUnsafeBufferPointer { pb in
                    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
                                transposeB ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
                                1, pa.baseAddress, blasint(a.columns), pb.baseAddress, blasint(b.columns),
                                bias != nil || accumulate ? 1 : 0, c, blasint(ldc))
                }
            }
            if relu { for i in 0..<m { for j in 0..<n { c[i * ldc + j] = max(c[i * ldc + j], 0) } } }
        }
        if let profiler {
            let elapsed = KernelProfiler.now() - start
            profiler.gemmNanoseconds += elapsed
            profiler.gemmFlops += 2 * m * n * k
            profiler.record("matmul \(m)×\(k)\(transposeA ? "ᵀ" : "")·\(k)×\(n)\(transposeB ? "ᵀ" : "")", nanoseconds: elapsed,
                            flops: 2 * m * n * k)
        }
    }

    /// OpenBLAS's row-major sgemm (the im2col convolutions), timed as GEMM:
    /// C = alpha·op(A)·op(B) + beta·C with row strides lda, ldb, ldc.
    func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
               _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, beta: Float,
               _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        timingKernel(flops: 2 * m * n * k) {
            cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                        blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
        }
    }

    /// Runs `body`, adding its duration to the profiler's GEMM/convolution total.
    @inline(__always)
    func timingKernel<R>(flops: Int, _ name: @autoclosure () -> String = "", _ body: () -> R) -> R {
        guard let profiler else { return body() }
        let start = KernelProfiler.now()
        let result = body()
        let elapsed = KernelProfiler.now() - start
        profiler.gemmNanoseconds += elapsed
        profiler.gemmFlops += flops
        profiler.record(name(), nanoseconds: elapsed, flops: flops)
        return result
    }

    /// Runs `body`, adding its duration to the profiler's layout total
    /// (im2col/col2im, reorders, bf16 rounding).
    @inline(__always)
    func timingLayout<R>(_ body: () -> R) -> R {
        guard let profiler else { return body() }
        let start = KernelProfiler.now()
        let result = body()
        profiler.layoutNanoseconds += KernelProfiler.now() - start
        return result
    }
}

/// Time spent in GEMMs and convolution kernels, and in layout work
/// (im2col/col2im, reorders, bf16 rounding), by the ops run on a backend that
/// holds this profiler. Without one (the default) the kernels pay one load
/// and a branch.
public final class KernelProfiler: @unchecked Sendable {
    public var gemmNanoseconds: UInt64 = 0
    public var gemmFlops = 0
    public var layoutNanoseconds: UInt64 = 0
    /// Per kernel (named by operation and shape): calls, time, FLOPs.
    public private(set) var kernels: [String: (calls: Int, nanoseconds: UInt64, flops: Int)] = [:]

    public init() {}

    func record(_ name: String, nanoseconds: UInt64, flops: Int) {
        guard !name.isEmpty else { return }
        let old = kernels[name] ?? (0, 0, 0)
        kernels[name] = (old.calls + 1, old.nanoseconds + nanoseconds, old.flops + flops)
    }

    /// The kernels by total time, longest first.
    public func summary(top: Int = 20) -> [(name: String, calls: Int, millisecondsPerCall: Double, gflops: Double)] {
        kernels.sorted { $0.value.nanoseconds > $1.value.nanoseconds }.prefix(top).map { name, k in
            (name, k.calls, Double(k.nanoseconds) / Double(max(k.calls, 1)) * 1e-6,
             k.nanoseconds > 0 ? Double(k.flops) / Double(k.nanoseconds) : 0)
        }
    }

    @usableFromInline
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// What the processor offers, for the choices that depend on it.
public enum CPU {
    /// The features vae-mpi's choices depend on.
    public struct Features: Sendable {
        public var avx512BF16: Bool
        public var amxBF16: Bool
        public var modelName: String

        public init(avx512BF16: Bool, amxBF16: Bool, modelName: String) {
            self.avx512BF16 = avx512BF16
            self.amxBF16 = amxBF16
            self.modelName = modelName
        }

        /// This machine's (CPUID, with the OS saving the vector state).
        public static var current: Features {
            Features(avx512BF16: ck_cpu_has_avx512_bf16() != 0, amxBF16: ck_cpu_has_amx_bf16() != 0, modelName: CPU.modelName)
        }

        /// AVX512_BF16 or AMX-BF16.
        public var nativeBF16: Bool { avx512BF16 || amxBF16 }
    }

    public static var hasNativeBF16: Bool { Features.current.nativeBF16 }
    public static var hasAVX512: Bool { ck_cpu_has_avx512f() != 0 }

    /// The model name /proc/cpuinfo gives, or "unknown".
    public static var modelName: String {
        guard let file = fopen("/proc/cpuinfo", "r") else { return "unknown" }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            if text.hasPrefix("model name"), let colon = text.firstIndex(of: ":") {
                return text[text.index(after: colon)...].trimmingCharacters(in: " \n\t")
            }
        }
        return "unknown"
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
