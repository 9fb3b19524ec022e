import ArgumentParser
import Foundation
import Sluice

/// `sluice new NAME --lang python|node|swift [--package]`: a function ready to test and run,
/// from the templates in ``FunctionTemplates``.
struct NewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Write a new function: its manifest, a handler, a test and a README.",
        discussion: """
            python, node and swift: functions/NAME/ (SLUICE_FUNCTIONS_DIR), a process Sluice starts (swift: \
            builds, with swiftc) and calls over the function protocol; `sluice dev` runs it and restarts it \
            within a second when its files change. swift --package: a package NAME/ that depends on Sluice and \
            builds its own sluice binary with the function in process.
            """)

    @Argument(help: "The function's name: a-z first, then a-z, 0-9 and '-', at most 40.")
    var name: String

    @Option(help: "python, node or swift.")
    var lang: FunctionTemplates.Language

    @Flag(help: "swift: a package that depends on Sluice and builds its own sluice binary with the function in process.")
    var package = false

    @Option(help: "Where to write it (default: the functions directory; ./NAME for a swift package).")
    var directory: String?

    @Option(help: "swift --package: the path of Sluice's source, which the package depends on (default: the source this binary was built from).")
    var sluicePath: String?

    func run() throws {
        guard FunctionTemplates.isValidName(name) else {
            throw CommandFailure("'\(name)' is not a function name: a-z first, then a-z, 0-9 and '-', at most 40")
        }
        guard !package || lang == .swift else { throw CommandFailure("--package applies to --lang swift") }
        let folder = directory ?? (package ? name : "\(Environment.configuration().functionsDirectory)/\(name)")
        guard !FileManager.default.fileExists(atPath: folder) else {
            throw CommandFailure("\(folder) exists already: choose another name or --directory")
        }
        let sluice = sluicePath ?? FunctionTemplates.sourceRoot
        let files = FunctionTemplates.files(name: name, language: lang, package: package, sluicePath: sluice)
        for (path, text) in files.sorted(by: { $0.key < $1.key }) {
            let full = "\(folder)/\(path)"
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: full, contents: Data(text.utf8)) else { throw CommandFailure("cannot write \(full)") }
            print("wrote \(full)")
        }
        print(FunctionTemplates.nextSteps(name: name, language: lang, package: package, folder: folder))
    }
}
