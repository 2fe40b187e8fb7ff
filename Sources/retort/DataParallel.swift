// Data-parallel runs of finetune and distill: `--nproc N` runs this same command under
// `mpirun -n N` on this machine (and turns Ctrl-C into a stop of every rank); a process that mpirun started (by --nproc, or by the user with
// a hostfile) joins the job, trains its share of every batch, and only rank 0 prints and
// writes. Any error on any rank ends the whole job (MPI_Abort), so no rank is left waiting.
import ArgumentParser
import Backend
import Foundation
import Train

/// Ctrl-C and SIGTERM seen by a --nproc launcher (a plain sig_atomic_t: all a handler may touch).
nonisolated(unsafe) private var interrupts: sig_atomic_t = 0

enum DataParallel {
    /// Runs `body` as this process's part of a job: relaunches under mpirun when `nproc` asks for
    /// more than one process (and this one was not started by mpirun), joins the job mpirun
    /// started, and leaves it (MPI_Finalize) after `body`, or ends the job on an error.
    static func running(nproc: Int?, _ body: () throws -> Void) throws {
        if let nproc, nproc > 1, !ProcessGroup.launchedByMPIRun { relaunch(processes: nproc) }
        if ProcessGroup.launchedByMPIRun { Interrupt.catchStops() }   // a stop from the start must not end the rank
        let world: ProcessGroup?
        do {
            world = try ProcessGroup.join()
        } catch {
            throw UserError(description: "\(error) (is this Open MPI's mpirun?)")
        }
        guard let world else { return try body() }
        do {
            try body()
            if world.isPrimary, let transport = world.deviceTransport { printError("retort: data parallel: the GPU gradients were summed \(transport)") }
            ProcessGroup.leave()
        } catch let exit as ExitCode where exit.rawValue == 130 {   // Ctrl-C: every rank stopped at the same step
            ProcessGroup.leave()
            throw exit
        } catch {
            FileHandle.standardError.write(Data(("retort: rank \(world.rank) of \(world.size): \(error)\n").utf8))
            world.abort(1)
        }
    }

    /// Refuses ranks on different kinds of device (`--device auto` where one rank found no usable
    /// GPU): their sums would never meet.
    static func checkSameDevice(_ backend: Backend) throws {
        guard let world = ProcessGroup.world else { return }
        var cuda = [backend.kind == .cuda ? 1.0 : 0.0]
        try world.allReduce(&cuda, what: "the device check")
        guard cuda[0] == 0 || Int(cuda[0]) == world.size else {
            throw UserError(description: "rank \(world.rank): \(Int(cuda[0])) of \(world.size) ranks run on cuda, the others on the cpu "
                            + "(this one on \(backend.kind)); give every rank the same --device (cuda needs a usable GPU on each machine)")
        }
    }

    /// Whether this process prints the run's progress and results (rank 0, or a process on its own).
    static var prints: Bool { ProcessGroup.isPrimaryProcess }

    /// CPU threads for each rank when none were asked for: the CPUs this process may use shared
    /// by the job's ranks on this machine (mpirun binds a rank to one core when it starts two or
    /// fewer; then that core).
    static var defaultThreads: Int? {
        guard let world = ProcessGroup.world, ProcessInfo.processInfo.environment["RETORT_NUM_THREADS"] == nil else { return nil }
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, world.localSize))
    }

    /// Runs `mpirun -n N … <this command without --nproc>` and exits with its status (never
    /// returns). mpirun gets a process group of its own, so that Ctrl-C reaches only this
    /// process, which turns it into SIGUSR1 for mpirun to pass to every rank: they stop at the
    /// same step and rank 0 saves a checkpoint. A second Ctrl-C ends the job at once (SIGTERM).
    static func relaunch(processes n: Int) -> Never {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard let mpirun = path.split(separator: ":").map({ "\($0)/mpirun" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            printError("retort: --nproc \(n) needs Open MPI's mpirun, which is not on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)")
            exit(1)
        }
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        var arguments = [mpirun, "-n", "\(n)", "--bind-to", "none", "--stdin", "none"]
        if n > cpus { arguments.append("--oversubscribe") }
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        arguments.append(executablePath())   // each rank takes its share of the CPUs (defaultThreads)
        var rest = Array(CommandLine.arguments.dropFirst())
        while let i = rest.firstIndex(where: { $0 == "--nproc" || $0.hasPrefix("--nproc=") }) {
            rest.removeSubrange(i..<min(rest.count, rest[i] == "--nproc" ? i + 2 : i + 1))
        }
        arguments += rest
        printError("retort: starting \(n) processes: " + arguments.joined(separator: " "))
        fflush(nil)
        signal(SIGINT) { _ in interrupts += 1 }
        signal(SIGTERM) { _ in interrupts += 2 }
        signal(SIGHUP) { _ in interrupts += 2 }   // the terminal closed: end the job
        signal(SIGCHLD, SIG_DFL)   // (an inherited SIG_IGN would leave nothing for waitpid)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var child: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let started = posix_spawn(&child, mpirun, nil, &attributes, argv, environ)
        guard started == 0 else {
            printError("retort: could not start \(mpirun): \(String(cString: strerror(started)))")
            exit(1)
        }
        var forwarded: sig_atomic_t = 0, status: Int32 = 0
        while true {
            let waited = waitpid(child, &status, WNOHANG)
            if waited == child { break }
            if waited < 0 && errno != EINTR {
                printError("retort: lost track of mpirun (pid \(child)): \(String(cString: strerror(errno)))")
                exit(1)
            }
            if interrupts > forwarded {
                if forwarded == 0 && interrupts == 1 {
                    printError("\nretort: stopping every rank after this step (Ctrl-C again to end them now)")
                    kill(child, SIGUSR1)
                } else {
                    kill(child, SIGTERM)
                }
                forwarded = interrupts
            }
            usleep(50_000)
        }
        // mpirun's status: the first failing rank's exit code (130 for a stop), or 128 + a signal.
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exit(code)
    }

    private static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
