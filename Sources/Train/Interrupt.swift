// Ctrl-C for a training run: the first SIGINT asks the run to stop after its current step (it
// then saves a checkpoint and throws RunInterrupted); a second one ends the process at once.
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
    }

    /// Restores the default handling.
    public static func release() {
        signal(SIGINT, SIG_DFL)
    }

    /// Whether Ctrl-C was pressed since catchSIGINT.
    public static var requested: Bool { requestFlag != 0 }
}

/// Set by the SIGINT handler (a plain sig_atomic_t: all a handler may touch).
nonisolated(unsafe) private var requestFlag: sig_atomic_t = 0
