import Collectives
import TensorCore
import VAEModel

/// The data-parallel half of a training step (DESIGN.md §6): it owns the
/// parameter layout, the flat reduction buffer, the step's collective and
/// Adam. Every rank calls `step` with its local gradient *sum*; all ranks
/// leave it with the same parameters.
///
/// The buffer of one step is
///
///     [gradient sums (P) | samples | term sums (T) | non-finite flag]
///
/// reduced by one allreduce: sums and the count travel together, so the
/// update is the exact mean over the samples of the global batch however
/// they were split, and a non-finite value anywhere stops every rank at the
/// same step.
public final class DataParallelOptimizer {
    public let layout: ParameterLayout
    let communicator: Communicator
    /// Adam's hyperparameters, step count and moments (flat, walk order).
    public private(set) var adam: Adam
    private var buffer: [Float]
    private let termCount: Int

    /// The sums every rank holds after a step's reduction.
    public struct ReducedStep {
        /// Samples in the global batch.
        public var samples: Float
        /// The objective's reported terms, summed over the global batch.
        public var terms: [Float]
    }

    public init(layout: ParameterLayout, adam: Adam, termCount: Int, communicator: Communicator) {
        precondition(adam.firstMoment.count == layout.count, "optimizer state does not match the parameter layout")
        self.layout = layout
        self.adam = adam
        self.termCount = termCount
        self.communicator = communicator
        buffer = [Float](repeating: 0, count: layout.count + termCount + 2)
    }

    public var learningRate: Float {
        get { adam.learningRate }
        set { adam.learningRate = newValue }
    }

    /// Sums `values` over all ranks: the objective's extra reductions (the
    /// global KL per dimension that free bits need).
    public func reduce(_ values: inout [Float]) throws {
        try communicator.allreduceSum(&values)
    }

    /// One synchronized update: packs this rank's gradient sum (nil for an
    /// empty local batch), sample count and term sums, allreduces them, and
    /// takes the Adam step with gradient sum / samples. A non-finite loss or
    /// gradient on any rank is thrown on every rank, before any update.
    public func step<Model: ParameterWalking>(_ model: inout Model, gradient: Model?, samples: Int, terms: [Float],
                                              step: Int, clock: inout PhaseClock) throws -> ReducedStep {
        precondition(terms.count == termCount, "the objective reports \(termCount) terms")
        let p = layout.count
        buffer.withUnsafeMutableBufferPointer { b in
            guard let gradient else {
                b.initialize(repeating: 0)
                return
            }
            let finite = gradient.flatten(into: b, layout: layout)
            b[p] = Float(samples)
            for (i, value) in terms.enumerated() { b[p + 1 + i] = value }
            b[p + 1 + termCount] = (finite && terms.reduce(0, +).isFinite) ? 0 : 1
        }
        clock.lap(.pack)
        try communicator.allreduceSum(&buffer)
        clock.lap(.reduction)

        // Every rank sees the same flag after the allreduce and stops here.
        if buffer[p + 1 + termCount] != 0 {
            throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: step), rank: communicator.rank)
        }
        let total = buffer[p]
        buffer.withUnsafeBufferPointer { b in
            adam.update(&model, gradient: UnsafeBufferPointer(rebasing: b[0..<p]), gradientScale: 1 / total, layout: layout)
        }
        clock.lap(.update)
        return ReducedStep(samples: total, terms: Array(buffer[p + 1 ..< p + 1 + termCount]))
    }
}
