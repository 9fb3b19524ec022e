import Synchronization

/// The port the Lambda Runtime API listens on, once it does.
final class LambdaAPIPort: Sendable {
    private let port = Mutex<Int?>(nil)

    func set(_ value: Int) { port.withLock { $0 = value } }

    /// The port, waiting until the API listens (at most 30 s: 0 when it does not, and the
    /// process started with it fails and is started again).
    func value() async -> Int {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, !Task.isCancelled {
            if let value = port.withLock({ $0 }) { return value }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return port.withLock { $0 } ?? 0
    }
}
