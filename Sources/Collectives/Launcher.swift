#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the process can learn about how it was started, before (or without)
/// initialising MPI: launchers announce themselves in the environment.
public enum Launcher {
    private static let sizeVariables: [String] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                                  "MV2_COMM_WORLD_SIZE"]
    private static let rankVariables: [String] = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"]

    /// True when started by an MPI launcher (mpirun, mpiexec, srun…).
    public static var isMPI: Bool {
        sizeVariables.contains { getenv($0) != nil }
    }

    /// The rank the launcher assigned (nil when not launched by MPI).
    public static var rank: Int? {
        for key in rankVariables {
            if let v = getenv(key), let r = Int(String(cString: v)) { return r }
        }
        return nil
    }
}
