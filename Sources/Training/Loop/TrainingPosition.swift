/// Where a run is: steps done in total, the epoch in progress (1-based) and
/// the steps done in it, samples seen. A checkpoint stores it; with the seed
/// it restores every random stream.
public struct TrainingPosition: Equatable, Sendable {
    public var step = 0
    public var epoch = 1
    public var stepInEpoch = 0
    public var samplesSeen = 0

    public init(step: Int = 0, epoch: Int = 1, stepInEpoch: Int = 0, samplesSeen: Int = 0) {
        self.step = step
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.samplesSeen = samplesSeen
    }

    mutating func finishStep(samples: Int) {
        step += 1
        stepInEpoch += 1
        samplesSeen += samples
    }

    mutating func startNextEpoch() {
        epoch += 1
        stepInEpoch = 0
    }
}
