// The Perf executable: the suite in PerfSuite (Perf/Sources), run with this process's arguments.
import PerfSuite

PerfCommand.main(Array(CommandLine.arguments.dropFirst()))
