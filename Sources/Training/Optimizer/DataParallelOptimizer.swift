import Collectives
import TensorCore
import VAEModel

/// The data-parallel half of a training step (docs/ARCHITECTURE.md, "One training step"): it owns the
/// parameter layout, the flat reduction buffer, the step's collectives and
/// Adam. Every rank calls `step` with its local gradient *sum*; all ranks
/// leave it with the same parameters.
///
/// The buffer of one step is
///
///     [gradient sums (P) | samples | term sums (T) | non-finite flag | stop requests]
///
/// The gradient kernels write into it directly (through `sink`, a
/// `GradientSink` over its first P floats). By default one allreduce reduces
/// it whole and every rank takes the same Adam step: sums and the count
/// travel together, so the update is the exact mean over the global batch
/// however it was split, and a non-finite value anywhere stops every rank at
/// the same step, before any update. A rank that was asked to stop (a
/// signal) says so in the same reduction, so every rank learns it at the
/// same step and they stop together.
///
/// When every rank runs on one host (the default there, with fp32 gradients
/// and without `--reproducible`), the reduction goes through shared memory
/// instead (`SharedSegments`), and Adam is sharded as below, with no copy
/// through MPI: each rank's kernels write its gradient into its own segment;
/// after a barrier, rank r sums slice r of every rank's gradient in rank
/// order, takes the Adam step on that slice of the parameters (holding
/// Adam's moments for it only) and writes the updated values in place of its
/// own gradient there, all in one pass over memory (`ck_adam_sum_update`,
/// block by block); after a second barrier every
/// rank copies the other ranks' updated slices into its parameters. The
/// counts, terms and flags are summed from every segment by every rank. The
/// summed gradient is checked for infinities and NaNs in the Adam pass
/// (while in L1; a flag after each half's buffer), not by a scan of each
/// rank's whole gradient, and every rank stops on any flag after the second
/// barrier. Each
/// step uses one of two halves of the segments in turn, so that a rank that
/// runs ahead into the next step's backward pass never writes where another
/// rank is still reading. The sums are those of rank order, which for np 2 are
/// the bits of MPI's allreduce (a + b = b + a); Adam is elementwise, so the
/// replicas and the update are the same as unsharded.
///
/// Sharded (ZeRO stage 1, `--shard-optimizer`): a reduce-scatter leaves each
/// rank the summed gradient of its 1/np slice of the parameters (and a small
/// allreduce the count, terms and flag), each rank updates its slice and holds
/// Adam's moments for it only, and an allgather of the updated slices gives
/// every rank all parameters. Replicas stay bit-identical.
///
/// With bf16 gradients (`--gradient-precision bf16`, for slow networks: half
/// the bytes): each rank rounds its gradient sum to bf16 and sends slice r to
/// rank r (an alltoall); each rank adds the np contributions to its slice in
/// fp32, in rank order, and rounds the sum to bf16 once; an allgather of the
/// summed slices (or, sharded, none) completes the reduction. The count, terms
/// and flag stay exact in a small fp32 allreduce.
public final class DataParallelOptimizer {
    public let layout: ParameterLayout
    let communicator: Communicator
    private let termCount: Int
    public let sharded: Bool
    /// The step's buffer (the sink's): owned, or this rank's half of its shared segment.
    private var buffer: UnsafeMutablePointer<Float> { sink.buffer }
    private let bufferCount: Int
    /// A shared segment's half: the buffer, then the flag of a non-finite
    /// summed gradient in this rank's slice (set by its Adam pass).
    private let segmentStride: Int
    /// The shared-memory reduction (nil: MPI's collectives), the half this
    /// step uses, and the reduced counts, terms and flags.
    private let shared: SharedSegments?
    private var half = 0
    private var sharedMeta: [Float] = []
    /// How the step's gradients are reduced (for the run's header).
    public let reductionSummary: String
    /// Whether this rank holds Adam's moments for its slice only.
    private var shardedMoments: Bool { sharded || shared != nil }
    /// Where this step's parameter gradients are written.
    public let sink: GradientSink
    /// Adam over the parameters this rank updates: all of them, or its slice.
    public private(set) var adam: Adam
    /// Sharded: each rank's block of the flat parameters, this rank's start,
    /// a flat copy of the parameters and this rank's reduced gradient.
    private let blocks: [Int]
    private let sliceStart: Int
    private var flatParameters: [Float] = []
    private var gradientSlice: [Float] = []
    /// The number format of the exchanged gradient, and its bf16 buffers:
    /// np padded slices of `sliceLength` to send, to receive, and all summed slices.
    public let gradientPrecision: Precision
    private let sliceLength: Int
    private var send16: [UInt16] = [], receive16: [UInt16] = [], summed16: [UInt16] = []
    /// `--reproducible`: the micro-shards' gradients and their exact sum.
    let exact: ExactGradientSum?

    /// The sums every rank holds after a step's reduction.
    public struct ReducedStep {
        /// Samples in the global batch.
        public var samples: Float
        /// The objective's reported terms, summed over the global batch.
        public var terms: [Float]
        /// Ranks that asked to stop after this step.
        public var stopRequests: Int
    }

    /// `adam` holds the moments of all parameters (new, or from a
    /// checkpoint); sharded, this rank keeps its slice of them.
    public init<Model: ParameterWalking>(model: Model, layout: ParameterLayout, adam: Adam, termCount: Int,
                                         communicator: Communicator, sharded: Bool = false,
                                         gradientPrecision: Precision = .fp32,
                                         reproducible: (microShards: Int, method: ExactReduction)? = nil,
                                         sharedMemory: Bool = true) throws {
        precondition(adam.firstMoment.count == layout.count, "optimizer state does not match the parameter layout")
        precondition(reproducible == nil || (!sharded && gradientPrecision == .fp32),
                     "the reproducible reduction is neither sharded nor in bf16")
        exact = reproducible.map {
            ExactGradientSum(layout: layout, method: $0.method, microShards: $0.microShards, communicator: communicator)
        }
        self.layout = layout
        self.termCount = termCount
        self.communicator = communicator
        self.sharded = sharded
        bufferCount = layout.count + termCount + 3
        segmentStride = bufferCount + 1
        // Shared memory where every rank can use it (decided by all ranks together).
        var wanted = [Double](repeating: 0, count: communicator.size)
        if !sharedMemory { wanted[communicator.rank] = 1 }
        try communicator.allreduceSum(&wanted)
        let refused = wanted.indices.filter { wanted[$0] != 0 }
        let viaMPI = { (why: String) in "MPI (" + (sharded ? "reduce-scatter, allgather" : "allreduce") + "; \(why))" }
        if communicator.size == 1 {
            shared = nil
            reductionSummary = "none (one rank)"
        } else if reproducible != nil || gradientPrecision == .bf16 {
            shared = nil
            reductionSummary = reproducible != nil ? "exact sums of the micro-shards (--reproducible)"
                : "MPI (bf16 alltoall and allgather)"
        } else if !refused.isEmpty {
            shared = nil
            reductionSummary = viaMPI("shared memory turned off by VAE_MPI_SHARED_MEMORY=0 on rank"
                                      + (refused.count > 1 ? "s " : " ") + refused.map(String.init).joined(separator: ", "))
        } else if try !communicator.allRanksOnOneNode() {
            shared = nil
            reductionSummary = viaMPI("ranks on several nodes")
        } else {
            switch try SharedSegments.make(count: 2 * segmentStride, communicator: communicator) {
            case .shared(let segments):
                shared = segments
                reductionSummary = "shared memory (each rank sums and updates 1/\(communicator.size) of the parameters)"
            case .unavailable(let reason):
                shared = nil
                reductionSummary = viaMPI("no shared memory: \(reason)")
            }
        }
        let buffer = shared?.segments[communicator.rank] ?? .allocate(capacity: bufferCount)
        if shared != nil { sharedMeta = [Float](repeating: 0, count: termCount + 3) }
        buffer.initialize(repeating: 0, count: bufferCount)
        sink = GradientSink(buffer: buffer)
        // Through shared memory, the summed gradient is checked in the Adam pass instead.
        sink.checksFiniteness = shared == nil
        // Slices of equal length (the last ones shorter), as the bf16 exchange's alltoall needs.
        let np = communicator.size
        let sliceLength = (layout.count + np - 1) / np
        self.sliceLength = sliceLength
        blocks = (0..<np).map { r in min(sliceLength, max(0, layout.count - r * sliceLength)) }
        sliceStart = communicator.rank * sliceLength
        self.gradientPrecision = gradientPrecision
        if gradientPrecision == .bf16 {
            send16 = [UInt16](repeating: 0, count: sliceLength * np)
            receive16 = send16
            summed16 = send16
        }
        var adam = adam
        if sharded || shared != nil {
            let slice = min(sliceStart, layout.count) ..< min(sliceStart, layout.count) + blocks[communicator.rank]
            adam.firstMoment = Array(adam.firstMoment[slice])
            adam.secondMoment = Array(adam.secondMoment[slice])
            if shared == nil {
                flatParameters = model.flattened(layout: layout)
                gradientSlice = [Float](repeating: 0, count: slice.count)
            }
        }
        self.adam = adam
    }

    /// The owned buffer (shared segments are the mapping's).
    deinit { if shared == nil { buffer.deallocate() } }

    /// Rank r's slice of the flat parameters.
    private func slice(of r: Int) -> Range<Int> {
        let start = min(r * sliceLength, layout.count)
        return start ..< start + blocks[r]
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

    /// Starts a step: the gradient sink learns where each parameter's
    /// gradient goes.
    public func beginStep<Model: ParameterWalking>(_ model: Model) {
        sink.begin(parameters: model.namedParameters.map(\.tensor), offsets: layout.entries.map(\.offset))
    }

    /// Adds one (micro-)batch's gradient to the step's buffer: what its
    /// kernels wrote there already, and what the pullback returned as tensors.
    public func addGradient<Model: ParameterWalking>(_ gradient: Model) {
        sink.complete(with: gradient.namedParameters.map(\.tensor))
    }

    /// A NaN in the last parameter's gradient, as a kernel's write would
    /// leave it (`FaultInjection`, for tests of the non-finite check).
    func spoilGradient() {
        guard layout.count > 0 else { return }
        buffer[layout.count - 1] = .nan
        sink.checkWritten(buffer + layout.count - 1, count: 1)
    }

    /// One synchronized update from the gradients added since `beginStep`
    /// (none: this rank's batch was empty): this rank's sample count and
    /// term sums ride with the gradient sums in one reduction, then the Adam
    /// step with gradient sum / samples. A non-finite loss or gradient on any
    /// rank is thrown on every rank at the same step: before any update, or,
    /// through shared memory, where the summed gradient is checked in the
    /// Adam pass, before any rank takes another's updated values (the run
    /// then ends without a checkpoint of that step).
    public func step<Model: ParameterWalking>(_ model: inout Model, hasGradient: Bool, samples: Int, terms: [Float],
                                              step: Int, stopRequested: Bool = false,
                                              clock: inout PhaseClock) throws -> ReducedStep {
        precondition(terms.count == termCount, "the objective reports \(termCount) terms")
        let p = layout.count
        let meta = buffer + p
        if hasGradient {
            meta[0] = Float(samples)
            for (i, value) in terms.enumerated() { meta[1 + i] = value }
            meta[1 + termCount] = (!sink.nonFinite && terms.reduce(0, +).isFinite) ? 0 : 1
        } else {
            buffer.initialize(repeating: 0, count: bufferCount)
        }
        meta[2 + termCount] = stopRequested ? 1 : 0
        clock.lap(.pack)

        if let shared {
            return try sharedStep(&model, shared: shared, step: step, clock: &clock)
        }
        if gradientPrecision == .bf16 {
            try exchangeBF16(gradient: buffer)
            try communicator.allreduceSum(UnsafeMutableBufferPointer(start: meta, count: termCount + 3))
        } else if sharded {
            let blocks = self.blocks
            try gradientSlice.withUnsafeMutableBufferPointer { slice in
                try communicator.reduceScatterSum(UnsafeBufferPointer(start: buffer, count: p), into: slice, counts: blocks)
            }
            try communicator.allreduceSum(UnsafeMutableBufferPointer(start: meta, count: termCount + 3))
        } else {
            try communicator.allreduceSum(UnsafeMutableBufferPointer(start: buffer, count: bufferCount))
        }
        clock.lap(.reduction)
        // Every rank sees the same flag after the reduction and stops here.
        if meta[1 + termCount] != 0 {
            throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: step, unscaledDataRange: nil), rank: communicator.rank)
        }
        let total = meta[0]
        let reduced = ReducedStep(samples: total, terms: Array(UnsafeBufferPointer(start: meta + 1, count: termCount)),
                                  stopRequests: Int(meta[2 + termCount]))

        if sharded {
            let count = blocks[communicator.rank]
            flatParameters.withUnsafeMutableBufferPointer { flat in
                gradientSlice.withUnsafeBufferPointer { g in
                    adam.update(parameters: flat.baseAddress! + min(sliceStart, layout.count), gradient: g.baseAddress!,
                                count: count,
                                gradientScale: 1 / total)
                }
            }
            clock.lap(.update)
            try flatParameters.withUnsafeMutableBufferPointer { try communicator.allgather($0, counts: blocks) }
            clock.lap(.reduction)
            flatParameters.withUnsafeBufferPointer { model.copy(from: $0, layout: layout) }
            clock.lap(.update)
        } else if gradientPrecision == .bf16 {
            summed16.withUnsafeBufferPointer {
                adam.update(&model, bf16Gradient: $0, gradientScale: 1 / total, layout: layout)
            }
            clock.lap(.update)
        } else {
            adam.update(&model, gradient: UnsafeBufferPointer(start: buffer, count: p), gradientScale: 1 / total,
                        layout: layout)
            clock.lap(.update)
        }
        return reduced
    }

    // MARK: - Shared memory

    /// The step's reduction and update through shared memory (see the type's
    /// comment); this rank's gradient sums, counts and terms are in `buffer`.
    private func sharedStep<Model: ParameterWalking>(_ model: inout Model, shared: SharedSegments, step: Int,
                                                     clock: inout PhaseClock) throws -> ReducedStep {
        let (p, rank) = (layout.count, communicator.rank)
        let halves = shared.segments.map { $0 + half * segmentStride }
        try shared.synchronize()
        let mine = slice(of: rank)
        try sharedMeta.withUnsafeMutableBufferPointer { meta in
            SegmentSum.sum(halves, offset: p, count: termCount + 3, into: meta.baseAddress!)
            // Every rank sees the same sums and stops here, before any update.
            if meta[1 + termCount] != 0 {
                throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: step, unscaledDataRange: nil), rank: rank)
            }
        }
        clock.lap(.reduction)
        let total = sharedMeta[0]
        // In one pass: the slice's gradient summed over the ranks, checked
        // for infinities and NaNs, Adam on it, and the updated values written
        // in place of this rank's gradient, for the other ranks to copy.
        let nonFinite = adam.update(&model, range: mine, summing: halves, publish: halves[rank], gradientScale: 1 / total,
                                    layout: layout)
        halves[rank][bufferCount] = nonFinite ? 1 : 0
        clock.lap(.update)
        try shared.synchronize()
        clock.lap(.reduction)
        // Every rank sees every slice's flag after the barrier and stops here,
        // before taking the others' values; the updated ones are never used
        // (the run ends, and its last checkpoint is from before this step).
        if halves.contains(where: { $0[bufferCount] != 0 }) {
            throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: step, unscaledDataRange: nil), rank: rank)
        }
        for r in 0..<communicator.size where r != rank {
            model.copy(range: slice(of: r), from: halves[r], layout: layout)
        }
        // The next step writes into the other half (see the type's comment).
        half ^= 1
        sink.retarget(shared.segments[rank] + half * segmentStride)
        clock.lap(.update)
        return ReducedStep(samples: total, terms: Array(sharedMeta[1 ..< 1 + termCount]),
                           stopRequests: Int(sharedMeta[2 + termCount]))
    }

    // MARK: - --reproducible

    /// Keeps the gradient of micro-shard `shard` (added since `beginStep`)
    /// for the step's exact sum.
    public func captureMicroShard(_ shard: Int) {
        exact!.capture(buffer, shard: shard, nonFinite: sink.nonFinite)
    }

    /// The update from the captured micro-shards' gradients: their exact sum
    /// (`ExactGradientSum`), then Adam with sum / samples. `rows` holds this
    /// rank's micro-shards' [samples, terms…] (others zero); every rank
    /// adds all V rows in micro-shard order, so the counts and the logged
    /// terms do not depend on np either.
    public func reproducibleStep<Model: ParameterWalking>(_ model: inout Model, rows: [[Float]?], step: Int,
                                                          stopRequested: Bool = false,
                                                          clock: inout PhaseClock) throws -> ReducedStep {
        let exact = self.exact!
        clock.lap(.pack)
        let finite = try exact.reduce(into: buffer)
        var table = MicroShardRows(microShards: exact.microShards, width: 2 + termCount)
        let gradientNonFinite = exact.anyNonFinite
        for (i, row) in rows.enumerated() {
            guard let row else { continue }
            precondition(row.count == 1 + termCount, "a micro-shard row is [samples, terms…]")
            let shard = exact.localShards.lowerBound + i
            let bad: Float = (gradientNonFinite || !row.reduce(0, +).isFinite) ? 1 : 0
            table.set(shard, row + [bad])
        }
        var extra: [Float] = [stopRequested ? 1 : 0]
        let sums = try table.reduced(communicator, extra: &extra)
        clock.lap(.reduction)
        if !finite || sums[1 + termCount] != 0 {
            throw CollectiveFailure.unanimous(TrainingError.nonFinite(step: step, unscaledDataRange: nil), rank: communicator.rank)
        }
        let total = sums[0]
        adam.update(&model, gradient: UnsafeBufferPointer(start: buffer, count: layout.count), gradientScale: 1 / total,
                    layout: layout)
        clock.lap(.update)
        return ReducedStep(samples: total, terms: Array(sums[1 ..< 1 + termCount]), stopRequests: Int(extra[0]))
    }

    /// The bf16 gradient exchange: the reduced gradient lands in `summed16`
    /// (all of it, in bf16), or, sharded, this rank's slice in `gradientSlice`.
    private func exchangeBF16(gradient: UnsafeMutablePointer<Float>) throws {
        let (p, np, s, rank) = (layout.count, communicator.size, sliceLength, communicator.rank)
        send16.withUnsafeMutableBufferPointer { BFloat16Buffers.round(gradient, into: $0.baseAddress!, count: p) }
        try send16.withUnsafeBytes { send in
            try receive16.withUnsafeMutableBytes { try communicator.alltoall(send, $0, blockBytes: 2 * s) }
        }
        receive16.withUnsafeBufferPointer { received in
            summed16.withUnsafeMutableBufferPointer { summed in
                BFloat16Buffers.sumBlocks(received.baseAddress!, ranks: np, count: s, into: summed.baseAddress! + rank * s)
            }
        }
        if sharded {
            let count = blocks[rank]
            summed16.withUnsafeBufferPointer { summed in
                gradientSlice.withUnsafeMutableBufferPointer {
                    if count > 0 { BFloat16Buffers.widen(summed.baseAddress! + rank * s, into: $0.baseAddress!, count: count) }
                }
            }
            return
        }
        // The whole reduced gradient, in bf16: Adam reads it as it is.
        try summed16.withUnsafeMutableBytes { try communicator.allgather($0, blockBytes: 2 * s) }
    }

    /// Adam's state over all parameters, for a checkpoint. Sharded, the
    /// moments are gathered from every rank: a collective, every rank calls it.
    public func gatheredState() throws -> Adam {
        guard shardedMoments else { return adam }
        var full = adam
        for moments in [\Adam.firstMoment, \Adam.secondMoment] {
            var all = [Float](repeating: 0, count: layout.count)
            let start = min(sliceStart, layout.count)
            all.replaceSubrange(start ..< start + blocks[communicator.rank], with: adam[keyPath: moments])
            try all.withUnsafeMutableBufferPointer { try communicator.allgather($0, counts: blocks) }
            full[keyPath: moments] = all
        }
        return full
    }
}
