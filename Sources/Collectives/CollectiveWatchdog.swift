#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The stall watchdog (`--collective-timeout`): a thread that notices when
/// this rank has waited in one collective longer than the timeout — a rank
/// that hangs, a dead peer MPI did not notice, a network that stopped — and
/// then prints this rank's rank, host, step, phase and collective and ends
/// the process with status 4, which makes mpirun end the job.
///
/// The training loop says where it is (`phase`, `step`); the MPI
/// communicator brackets every collective with `entering`/`left`.
public final class CollectiveWatchdog: @unchecked Sendable {
    public static let shared = CollectiveWatchdog()

    /// What the rank is doing: "setup", "data", "forward", "reduction", "evaluation", "checkpoint".
    public enum Phase: String, Sendable {
        case setup, data, forward, reduction, evaluation, checkpoint, inference, finish
    }

    private var mutex = pthread_mutex_t()
    private var phase = Phase.setup
    private var step = 0
    private var collective: String? = nil
    private var since = 0.0
    private var timeout = 0.0
    private var started = false
    private var rank = 0
    private var host = ""

    private init() { pthread_mutex_init(&mutex, nil) }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Starts watching (once per process): a collective waiting longer than
    /// `seconds` ends the process. Zero or less: no watchdog.
    public func start(timeout seconds: Double, rank: Int, host: String) {
        let first = locked { () -> Bool in
            timeout = seconds
            self.rank = rank
            self.host = host
            defer { started = true }
            return !started
        }
        guard first, seconds > 0 else { return }
        var thread = pthread_t()
        pthread_create(&thread, nil, { _ in
            CollectiveWatchdog.shared.watch()
            return nil
        }, nil)
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

    private func watch() {
        while true {
            usleep(200_000)
            let report = locked { () -> String? in
                guard let collective, timeout > 0 else { return nil }
                let waited = Self.now() - since
                guard waited > timeout else { return nil }
                return "vae-mpi: error (rank \(rank)): stalled: rank \(rank) on \(host) has waited \(Int(waited)) s in "
                    + "\(collective) during the \(phase.rawValue) phase at step \(step) (--collective-timeout \(Int(timeout)) s); "
                    + "another rank stopped taking part (look for the rank that printed no such line). Aborting the job.\n"
            }
            if let report {
                _ = report.withCString { write(2, $0, strlen($0)) }
                _exit(4)
            }
        }
    }
}
