// Ctrl-C for a training run: the first SIGINT asks the run to stop after its current step (it
// then saves a checkpoint and throws RunInterrupted); a second one ends the process at once.
// SIGUSR1 asks the same: `retort … --nproc N` turns Ctrl-C into a SIGUSR1 to mpirun, which
// passes it to every rank (a data-parallel job stops all its ranks at one step).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Interrupt {
    /// Installs the handler (idempotent) and clears any earlier request.
    public static func catchSIGINT() {
        requestFlag = 0
        signal(SIGINT) { _ in
            requestFlag = 1
            signal(SIGINT, SIG_DFL)   // a second Ctrl-C is not caught
        }
        signal(SIGUSR1) { _ in requestFlag = 1 }
    }

    /// Restores the default handling of SIGINT; SIGUSR1 is ignored from then on (a stop that
    /// arrives after the run must not end a data-parallel rank).
    public static func release() {
        signal(SIGINT, SIG_DFL)
        signal(SIGUSR1, SIG_IGN)
    }

    /// Whether Ctrl-C was pressed since catchSIGINT.
    public static var requested: Bool { requestFlag != 0 }
}

/// Set by the SIGINT handler (a plain sig_atomic_t: all a handler may touch).
nonisolated(unsafe) private var requestFlag: sig_atomic_t = 0
