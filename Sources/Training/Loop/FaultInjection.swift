import TensorCore
import VAEModel

/// Faults a test can inject into a run, so that the multi-rank tests can
/// check the paths that real failures take. The executable fills it from
/// `VAE_MPI_FAIL_AT=rank:step` and `VAE_MPI_DIVERGE_AT=rank:step`.
public struct FaultInjection: Sendable {
    /// This rank throws before the reduction of this (1-based) step: one
    /// rank's failure must end the whole job.
    public var failure: (rank: Int, step: Int)?
    /// This rank nudges one parameter by 1e-3 after this step, a silent
    /// divergence that `--verify-replicas` must catch. (One ulp would not
    /// do: later updates much larger than an ulp can round it away.)
    public var divergence: (rank: Int, step: Int)?

    public init(failure: (rank: Int, step: Int)? = nil, divergence: (rank: Int, step: Int)? = nil) {
        self.failure = failure
        self.divergence = divergence
    }

    func failIfDue(rank: Int, step: Int) throws {
        if let f = failure, f.rank == rank, f.step == step { throw TrainingError.injectedFailure(step: step) }
    }

    func divergeIfDue<Model: ParameterWalking>(_ model: inout Model, rank: Int, step: Int) {
        guard let d = divergence, d.rank == rank, d.step == step else { return }
        var nudged = false
        model.walkParameters { _, tensor in
            if !nudged && tensor.count > 0 { tensor.scalars[0] += 1e-3; nudged = true }
        }
    }
}
