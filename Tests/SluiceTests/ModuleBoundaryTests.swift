import Foundation
import Testing

/// The import rules of the codebase, read from the sources: the core imports no adapter and no
/// function; no adapter imports a function, the command line, or another adapter; only the
/// command line imports everything. A violation names the file and the import.
@Suite("Module boundaries")
struct ModuleBoundaryTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources").standardized

    /// The adapters, and the libraries on the core (personal data): each imports only the core.
    static let adapters: Set = ["SluiceRedis", "SluicePostgres", "SluiceHTTP", "SluiceNotify", "SluiceUploads", "SluiceDeploy", "SluicePrivacy"]
    static let ours: Set = adapters.union(["Sluice", "SluiceFunctions", "sluice"])

    /// The Sluice modules each file of `module` imports, as (file, module) pairs.
    func imports(of module: String) throws -> [(file: String, module: String)] {
        let directory = Self.sources.appendingPathComponent(module)
        // A wrong path must fail the rules, not pass them with nothing read.
        let files = try #require(FileManager.default.enumerator(atPath: directory.path), "no sources at \(directory.path)")
        var read = 0
        var found: [(String, String)] = []
        for case let file as String in files where file.hasSuffix(".swift") {
            read += 1
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard let index = words.firstIndex(of: "import"), index + 1 < words.count,
                      words[..<index].allSatisfy({ $0.hasPrefix("@") }) else { continue }
                let imported = String(words[index + 1])
                if Self.ours.contains(imported) { found.append(("\(module)/\(file)", imported)) }
            }
        }
        #expect(read > 0, "no Swift file in \(directory.path)")
        return found
    }

    @Test func theCoreImportsNoOtherSluiceModule() throws {
        let imported = try imports(of: "Sluice")
        #expect(imported.isEmpty, "\(imported)")
    }

    @Test func adaptersImportOnlyTheCore() throws {
        for adapter in Self.adapters.sorted() {
            let wrong = try imports(of: adapter).filter { $0.module != "Sluice" }
            #expect(wrong.isEmpty, "\(wrong)")
        }
    }

    @Test func functionsDoNotImportTheCommandLine() throws {
        let wrong = try imports(of: "SluiceFunctions").filter { $0.module == "sluice" || $0.module == "SluiceDeploy" }
        #expect(wrong.isEmpty, "\(wrong)")
        // The rules read real files: the functions do import the core and adapters.
        #expect(try imports(of: "SluiceFunctions").contains { $0.module == "SluiceRedis" })
    }
}
