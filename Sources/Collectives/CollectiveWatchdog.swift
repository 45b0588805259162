#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The stall watchdog (`--collective-timeout`): a thread that notices when
/// this rank has waited in one collective longer than the timeout — a rank
/// that hangs, a dead peer MPI did not notice, a network that stopped — and
/// then hands a report (this rank's rank, host, step, phase and collective)
/// to `onStall`, which the executable supplies: it prints the report and
/// ends the process (status 4), which makes mpirun end the job. The library
/// never exits the process itself.
///
/// The training loop says where it is (`set(phase:step:)`, through its
/// communicator's `watchdog`); the MPI communicator brackets every
/// collective with `entering`/`left`.
public final class CollectiveWatchdog: @unchecked Sendable {
    /// What the rank is doing: "setup", "data", "forward", "reduction", "evaluation", "checkpoint".
    public enum Phase: String, Sendable {
        case setup, data, forward, reduction, evaluation, checkpoint, inference, finish
    }

    private var mutex = pthread_mutex_t()
    private var phase = Phase.setup
    private var step = 0
    private var collective: String? = nil
    private var since = 0.0
    private let timeout: Double
    private let rank: Int
    private let host: String
    private let onStall: @Sendable (String) -> Void
    private var started = false

    /// A watchdog for this rank: a collective waiting longer than `timeout`
    /// seconds (> 0) calls `onStall` with the report, from the watchdog's
    /// own thread, once.
    public init(timeout: Double, rank: Int, host: String, onStall: @escaping @Sendable (String) -> Void) {
        precondition(timeout > 0, "a watchdog needs a positive timeout")
        self.timeout = timeout
        self.rank = rank
        self.host = host
        self.onStall = onStall
        pthread_mutex_init(&mutex, nil)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Starts the watching thread (once). The watchdog lives as long as the
    /// process: the thread holds it.
    public func start() {
        let first = locked { () -> Bool in
            defer { started = true }
            return !started
        }
        guard first else { return }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            Unmanaged<CollectiveWatchdog>.fromOpaque(context!).takeRetainedValue().watch()
            return nil
        }, context)
        pthread_detach(thread)
    }

    public func set(phase: Phase, step: Int? = nil) {
        locked {
            self.phase = phase
            if let step { self.step = step }
        }
    }

    public func entering(_ name: String) {
        let now = Self.now()
        locked {
            collective = name
            since = now
        }
    }

    public func left() { locked { collective = nil } }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// The report of a collective waiting past the timeout, if one is.
    func stallReport(at time: Double) -> String? {
        locked { () -> String? in
            guard let collective else { return nil }
            let waited = time - since
            guard waited > timeout else { return nil }
            return "stalled: rank \(rank) on \(host) has waited \(Int(waited)) s in "
                + "\(collective) during the \(phase.rawValue) phase at step \(step) (--collective-timeout \(Int(timeout)) s); "
                + "another rank stopped taking part (look for the rank that printed no such line). Aborting the job."
        }
    }

    private func watch() {
        while true {
            usleep(200_000)
            if let report = stallReport(at: Self.now()) {
                onStall(report)
                return
            }
        }
    }
}
