// The backend-check executable: Conformance's BackendCheck with this process's arguments
// (usage: backend-check --help; `retort backend-check` is the same).
import Conformance
import Foundation

let status = BackendCheck.main(Array(CommandLine.arguments.dropFirst()))
fflush(nil)   // every stream, before exit's handlers (the emulator prints its counters from one): whole lines, in order
exit(status)
