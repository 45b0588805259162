import TensorCore

/// The parts of a training step that the profile times.
public enum StepPhase: Int, CaseIterable, Sendable {
    /// Building the batch and drawing the noise.
    case data
    /// valueWithPullback and the pullback.
    case forwardBackward
    /// Writing the gradient into the reduction buffer, with the finiteness check.
    case pack
    /// The step's collectives.
    case reduction
    /// Adam.
    case update
}

/// Accumulates wall time per phase: `lap(p)` charges the time since the
/// previous lap to `p`.
public struct PhaseClock {
    private var last = monotonicSeconds()
    public private(set) var seconds = [Double](repeating: 0, count: StepPhase.allCases.count)

    public init() {}

    public mutating func lap(_ phase: StepPhase) {
        let now = monotonicSeconds()
        seconds[phase.rawValue] += now - last
        last = now
    }
}

/// Seconds spent in each part of the training steps so far (this rank),
/// after the warm-up steps.
public struct StepTimings: Sendable {
    public var phases = [Double](repeating: 0, count: StepPhase.allCases.count)
    /// Time inside forward+backward in GEMM and convolution kernels, and in
    /// layout work (reorders, bf16 rounding, im2col/col2im), with a profiler.
    public var gemm = 0.0
    public var layout = 0.0
    /// Floating-point operations of those kernels (multiply and add counted apart).
    public var gemmFlops = 0.0
    /// Steps measured.
    public var steps = 0
    /// Steps at the start of a run that are not measured (allocations, cold caches).
    public static let warmupSteps = 10

    public subscript(phase: StepPhase) -> Double { phases[phase.rawValue] }
    public var total: Double { phases.reduce(0, +) }

    mutating func add(_ clock: PhaseClock, kernels: (gemm: Double, layout: Double, flops: Double)) {
        for i in phases.indices { phases[i] += clock.seconds[i] }
        gemm += kernels.gemm
        layout += kernels.layout
        gemmFlops += kernels.flops
        steps += 1
    }
}

extension KernelProfiler {
    /// (GEMM and convolution, layout) seconds so far, and the kernels' operations.
    var seconds: (gemm: Double, layout: Double, flops: Double) {
        (Double(gemmNanoseconds) * 1e-9, Double(layoutNanoseconds) * 1e-9, Double(gemmFlops))
    }
}
