import Collectives
import Foundation
import TensorCore
import VAEModel

/// Faults a test can inject into a run, so that the multi-rank tests can
/// check the paths that real failures take. The executable fills it from
/// `VAE_MPI_FAIL_AT=rank:step`, `VAE_MPI_DIVERGE_AT=rank:step`,
/// `VAE_MPI_STALL_AT=rank:step:phase`, `VAE_MPI_SIGNAL_AT=rank:step` and
/// `VAE_MPI_NAN_GRADIENT_AT=rank:step`.
public struct FaultInjection: Sendable {
    /// This rank throws before the reduction of this (1-based) step: one
    /// rank's failure must end the whole job.
    public var failure: (rank: Int, step: Int)?
    /// This rank nudges one parameter by 1e-3 after this step, a silent
    /// divergence that `--verify-replicas` must catch. (One ulp would not
    /// do: later updates much larger than an ulp can round it away.)
    public var divergence: (rank: Int, step: Int)?

    /// This rank sleeps for an hour in this phase of this step: the stall
    /// watchdog of the other ranks must end the job.
    public var stall: (rank: Int, step: Int, phase: CollectiveWatchdog.Phase)?
    /// This rank raises its stop request at this step, as a signal would.
    public var stopRequest: (rank: Int, step: Int)?
    /// This rank's gradient of this step gets a NaN after its backward pass,
    /// in the last parameter (the last rank's slice where Adam is sharded):
    /// every rank must stop at that step, whichever path checks the sums.
    public var nonFiniteGradient: (rank: Int, step: Int)?

    public init(failure: (rank: Int, step: Int)? = nil, divergence: (rank: Int, step: Int)? = nil,
                stall: (rank: Int, step: Int, phase: CollectiveWatchdog.Phase)? = nil,
                stopRequest: (rank: Int, step: Int)? = nil, nonFiniteGradient: (rank: Int, step: Int)? = nil) {
        self.failure = failure
        self.divergence = divergence
        self.stall = stall
        self.stopRequest = stopRequest
        self.nonFiniteGradient = nonFiniteGradient
    }

    /// Whether a fault set for `at` falls on this rank and step.
    private static func due(_ at: (rank: Int, step: Int)?, rank: Int, step: Int) -> Bool {
        at.map { $0.rank == rank && $0.step == step } ?? false
    }

    func spoilsGradient(rank: Int, step: Int) -> Bool {
        Self.due(nonFiniteGradient, rank: rank, step: step)
    }

    func stallIfDue(rank: Int, step: Int, phase: CollectiveWatchdog.Phase) {
        guard let s = stall, s.rank == rank, s.step == step, s.phase == phase else { return }
        Thread.sleep(forTimeInterval: 3600)
    }

    func requestsStop(rank: Int, step: Int) -> Bool {
        Self.due(stopRequest, rank: rank, step: step)
    }

    func failIfDue(rank: Int, step: Int) throws {
        if Self.due(failure, rank: rank, step: step) { throw TrainingError.injectedFailure(step: step) }
    }

    func divergeIfDue<Model: ParameterWalking>(_ model: inout Model, rank: Int, step: Int) {
        guard Self.due(divergence, rank: rank, step: step) else { return }
        var nudged = false
        model.walkParameters { _, tensor in
            if !nudged && tensor.count > 0 { tensor.scalars[0] += 1e-3; nudged = true }
        }
    }
}
