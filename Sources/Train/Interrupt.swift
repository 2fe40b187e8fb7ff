// Ctrl-C for a training run: the first SIGINT asks the run to stop after its current step (it
// then saves a checkpoint and throws RunInterrupted); a second one ends the process at once.
// SIGTERM (kill, timeout, a scheduler, docker stop) asks the same, so its work is kept too.
// SIGUSR1 asks the same: `retort … --nproc N` turns Ctrl-C into a SIGUSR1 to mpirun, which
// passes it to every rank (a data-parallel job stops all its ranks at one step).
import Backend
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Interrupt {
    /// A data-parallel rank takes stops (SIGUSR1) from the moment it starts: a stop that arrives
    /// before its run does is kept for the run.
    public static func catchStops() {
        signal(SIGUSR1) { _ in stopFlag = 1 }
    }

    /// Installs the handler (idempotent) and clears any earlier request (a data-parallel rank's
    /// pending stop aside).
    public static func catchSIGINT() {
        requestFlag = 0
        if ProcessGroup.world == nil { stopFlag = 0 }
        // (A data-parallel rank leaves SIGTERM to its default: mpirun sends it to end the job at once.)
        for number in ProcessGroup.world == nil ? [SIGINT, SIGTERM] : [SIGINT] {
            signal(number) { number in
                requestFlag = number
                signal(SIGINT, SIG_DFL)   // a second Ctrl-C or SIGTERM is not caught
                signal(SIGTERM, SIG_DFL)
            }
        }
        catchStops()
    }

    /// Restores the default handling (a data-parallel rank keeps taking stops: one that comes
    /// after its run must not end it).
    public static func release() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        if ProcessGroup.world == nil { signal(SIGUSR1, SIG_DFL) }
    }

    /// Whether Ctrl-C was pressed, SIGTERM sent (or a stop) since catchSIGINT.
    public static var requested: Bool { requestFlag != 0 || stopFlag != 0 }

    /// The status a command exits with once it has stopped for a request: 128 + the signal's
    /// number, as a shell reports a process that signal ended (130 for Ctrl-C and for a
    /// data-parallel stop, 143 for SIGTERM).
    public static var exitStatus: Int32 { requestFlag != 0 ? 128 + requestFlag : 128 + SIGINT }
}

/// Set by the handlers (plain sig_atomic_t: all a handler may touch).
nonisolated(unsafe) private var requestFlag: sig_atomic_t = 0
nonisolated(unsafe) private var stopFlag: sig_atomic_t = 0
