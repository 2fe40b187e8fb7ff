// Data-parallel runs of finetune and distill: `--nproc N` starts this same command under
// `mpirun -n N` on this machine; a process that mpirun started (by --nproc, or by the user with
// a hostfile) joins the job, trains its share of every batch, and only rank 0 prints and
// writes. Any error on any rank ends the whole job (MPI_Abort), so no rank is left waiting.
import ArgumentParser
import Backend
import Foundation
import Train

enum DataParallel {
    /// Runs `body` as this process's part of a job: relaunches under mpirun when `nproc` asks for
    /// more than one process (and this one was not started by mpirun), joins the job mpirun
    /// started, and leaves it (MPI_Finalize) after `body`, or ends the job on an error.
    static func running(nproc: Int?, _ body: () throws -> Void) throws {
        if let nproc, nproc > 1, !ProcessGroup.launchedByMPIRun { relaunch(processes: nproc) }
        let world: ProcessGroup?
        do {
            world = try ProcessGroup.join()
        } catch {
            throw UserError(description: "\(error) (is this Open MPI's mpirun?)")
        }
        guard let world else { return try body() }
        do {
            try body()
            ProcessGroup.leave()
        } catch let exit as ExitCode where exit.rawValue == 130 {   // Ctrl-C: every rank stopped at the same step
            ProcessGroup.leave()
            throw exit
        } catch {
            FileHandle.standardError.write(Data(("retort: rank \(world.rank) of \(world.size): \(error)\n").utf8))
            world.abort(1)
        }
    }

    /// Whether this process prints the run's progress and results (rank 0, or a process on its own).
    static var prints: Bool { ProcessGroup.world?.isPrimary ?? true }

    /// CPU threads for each rank when none were asked for: the CPUs this process may use shared
    /// by the job's ranks on this machine (mpirun binds a rank to one core when it starts two or
    /// fewer; then that core).
    static var defaultThreads: Int? {
        guard let world = ProcessGroup.world, ProcessInfo.processInfo.environment["RETORT_NUM_THREADS"] == nil else { return nil }
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, world.localSize))
    }

    /// Replaces this process by `mpirun -n N … <this command without --nproc>` (never returns).
    static func relaunch(processes n: Int) -> Never {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard let mpirun = path.split(separator: ":").map({ "\($0)/mpirun" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            printError("retort: --nproc \(n) needs Open MPI's mpirun, which is not on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)")
            exit(1)
        }
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        var arguments = [mpirun, "-n", "\(n)", "--bind-to", "none"]
        if n > cpus { arguments.append("--oversubscribe") }
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        if ProcessInfo.processInfo.environment["RETORT_NUM_THREADS"] == nil {
            setenv("RETORT_NUM_THREADS", "\(max(1, cpus / n))", 1)
        }
        arguments += ["-x", "RETORT_NUM_THREADS", executablePath()]
        var rest = Array(CommandLine.arguments.dropFirst())
        while let i = rest.firstIndex(where: { $0 == "--nproc" || $0.hasPrefix("--nproc=") }) {
            rest.removeSubrange(i..<min(rest.count, rest[i] == "--nproc" ? i + 2 : i + 1))
        }
        arguments += rest
        printError("retort: starting \(n) processes: " + arguments.joined(separator: " "))
        fflush(nil)
        let argv = arguments.map { strdup($0) } + [nil]
        execv(mpirun, argv)
        printError("retort: could not start \(mpirun): \(String(cString: strerror(errno)))")
        exit(1)
    }

    private static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
