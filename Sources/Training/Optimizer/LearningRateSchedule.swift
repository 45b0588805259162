import TensorCore
import Foundation

/// The learning rate of every optimizer step, as a function of the run's
/// position only (the global step and the epoch), so a resumed run takes
/// exactly the steps an uninterrupted one would.
///
/// - `constant`: the base rate.
/// - `cosine`: from the base rate down to 0 over the run's planned steps
///   (`--epochs` × steps per epoch), half a cosine period (Loshchilov &
///   Hutter 2017, without restarts; PyTorch's `CosineAnnealingLR`).
/// - `step`: the base rate times γ for every decay epoch already completed
///   (PyTorch's `MultiStepLR` with milestones in epochs).
///
/// A warm-up of W steps ramps linearly from 0 first (Goyal et al. 2017):
/// step t ≤ W takes base · t/W; the decay then starts from the base rate.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case constant, cosine, step
    }

    public var kind = Kind.constant
    public var warmupSteps = 0
    /// `step`: the epochs after which the rate is multiplied by `decay`.
    public var decayEpochs: [Int] = []
    /// `step`: γ.
    public var decay = 0.1

    public init(kind: Kind = .constant, warmupSteps: Int = 0, decayEpochs: [Int] = [], decay: Double = 0.1) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.decayEpochs = decayEpochs
        self.decay = decay
    }

    /// The rate of optimizer step `step` (1-based), taken in `epoch`
    /// (1-based), in a run of `totalSteps` planned steps.
    /// The rules of each value (`InvalidSetting` names the field).
    public func validate() throws {
        try InvalidSetting.check("warmup_steps", warmupSteps, atLeast: 0)
        try InvalidSetting.require(decay.isFinite && decay > 0, "decay", "must be a positive number (got \(decay))")
        try InvalidSetting.require(decayEpochs.allSatisfy { $0 >= 1 } && decayEpochs == decayEpochs.sorted()
                                   && Set(decayEpochs).count == decayEpochs.count,
                                   "decay_epochs", "must be increasing positive epoch numbers, like 30,60 (got \(decayEpochs))")
        try InvalidSetting.require(kind != .step || !decayEpochs.isEmpty, "decay_epochs", "must be given for the step schedule")
    }

    public func rate(base: Double, step: Int, epoch: Int, totalSteps: Int) -> Double {
        if warmupSteps > 0 && step <= warmupSteps {
            return base * Double(step) / Double(warmupSteps)
        }
        switch kind {
        case .constant:
            return base
        case .cosine:
            let span = max(totalSteps - warmupSteps, 1)
            let progress = min(max(Double(step - 1 - warmupSteps) / Double(span), 0), 1)
            return base * 0.5 * (1 + cos(Double.pi * progress))
        case .step:
            let passed = decayEpochs.filter { $0 < epoch }.count
            return base * pow(decay, Double(passed))
        }
    }

    /// "cosine over 4690 steps after a 500-step warm-up".
    public func summary(totalSteps: Int) -> String {
        var text: String
        switch kind {
        case .constant: text = "constant"
        case .cosine: text = "cosine to 0 over \(totalSteps) steps"
        case .step:
            text = "× \(decay) after epoch\(decayEpochs.count == 1 ? "" : "s") "
                + decayEpochs.map(String.init).joined(separator: ", ")
        }
        if warmupSteps > 0 { text += ", after a \(warmupSteps)-step linear warm-up from 0" }
        return text
    }
}
