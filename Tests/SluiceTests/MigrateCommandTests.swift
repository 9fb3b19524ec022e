import Foundation
import SluiceDeploy
@testable import SluiceRuntime
import Testing

/// How `sluice migrate --roles` finds the roles' passwords, and `sluice render`'s data store options.
@Suite struct MigrateCommandTests {
    @Test func aRolesPasswordComesFromItsFileThenItsVariable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("roles-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data("from-file\n".utf8).write(to: URL(fileURLWithPath: "\(directory)/load"))
        let environment = ["SLUICE_ROLE_PASSWORD_LOAD": "from-env", "SLUICE_ROLE_PASSWORD_JOB_RECORDER": "dashed"]
        #expect(try MigrateCommand.password(for: "load", directory: directory, environment: environment) == "from-file")
        #expect(try MigrateCommand.password(for: "load", directory: nil, environment: environment) == "from-env")
        #expect(try MigrateCommand.password(for: "job-recorder", directory: directory, environment: environment) == "dashed")
        #expect(try MigrateCommand.password(for: "enrich", directory: directory, environment: environment) == nil)
        try Data("\n".utf8).write(to: URL(fileURLWithPath: "\(directory)/enrich"))
        #expect(throws: CommandFailure.self) { try MigrateCommand.password(for: "enrich", directory: directory, environment: [:]) }
        #expect(DeploymentRenderer.rolePasswordVariable("job-recorder") == "SLUICE_ROLE_PASSWORD_JOB_RECORDER")
    }

    @Test func renderTakesTheDataStoresPodsOrAddresses() throws {
        #expect(try RenderCommand.parse(["k8s"]).datastores() == DatastorePeers())
        let named = try RenderCommand.parse(["k8s", "--redis-selector", "app=cache", "--datastores-namespace", "data",
                                             "--postgres-cidr", "10.0.4.0/28", "--postgres-cidr", "10.0.5.1/32"]).datastores()
        #expect(named == DatastorePeers(redis: .pods(labels: ["app": "cache"], namespace: "data"), postgres: .addresses(["10.0.4.0/28", "10.0.5.1/32"])))
        for refused in [["--postgres-cidr", "0.0.0.0/0"], ["--redis-selector", "app"], ["--redis-selector", "a=b", "--redis-cidr", "10.0.0.1/32"]] {
            #expect(throws: (any Error).self, "\(refused)") { _ = try RenderCommand.parse(["k8s"] + refused) }
        }
    }
}
