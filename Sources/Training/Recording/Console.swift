import Collectives
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rank 0's voice. Every other rank is silent here (their errors are printed
/// by the executable, prefixed with the rank).
///
/// On a terminal, progress is one line rewritten in place; otherwise (a log
/// file, CI) progress lines are printed as they come.
public final class Console {
    public let enabled: Bool
    public let isTerminal: Bool
    private var liveLineShown = false

    public init(rank: Int, forceQuiet: Bool = false) {
        enabled = rank == 0 && !forceQuiet
        isTerminal = Self.stdoutIsTerminal()
    }

    /// Whether our output reaches a terminal. Under mpirun, a rank's stdout
    /// is a pseudo-terminal that mpirun relays whether or not mpirun's own
    /// stdout is a terminal; so when our parent is the launcher, ask about
    /// its stdout instead (/proc; false when unknown, e.g. on remote hosts).
    static func stdoutIsTerminal() -> Bool {
        guard isatty(STDOUT_FILENO) != 0 else { return false }
        guard Launcher.isMPI else { return true }
        var target = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(getppid())/fd/1", &target, target.count - 1)
        guard n > 0 else { return false }
        let path = target.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return path.hasPrefix("/dev/pts/") || path.hasPrefix("/dev/tty")
    }

    /// A line of output (clears the live line first).
    public func print(_ line: String) {
        guard enabled else { return }
        clearLiveLine()
        Swift.print(line)
        fflush(nil)
    }

    /// Progress: rewritten in place on a terminal, a plain line otherwise.
    public func progress(_ line: String) {
        guard enabled else { return }
        if isTerminal {
            Swift.print("\r\u{1B}[2K" + line, terminator: "")
            liveLineShown = true
        } else {
            Swift.print(line)
        }
        fflush(nil)
    }

    public func clearLiveLine() {
        if liveLineShown {
            Swift.print("\r\u{1B}[2K", terminator: "")
            liveLineShown = false
        }
    }
}

/// Monotonic time in seconds.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// "1h02m", "3m05s", "42s".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(twoDigits((s % 3600) / 60))m" }
    if s >= 60 { return "\(s / 60)m\(twoDigits(s % 60))s" }
    return "\(s)s"
}

func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
