import Testing
@testable import Sluice

@Suite("Retry schedule")
struct RetryPolicyTests {
    @Test func exponentialScheduleCappedAtMax() {
        let policy = RetryPolicy(maxAttempts: 6, initialBackoff: .milliseconds(200), maxBackoff: .seconds(1), jitter: 0)
        #expect(policy.schedule == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
    }

    @Test func retriesUntilMaxAttempts() {
        let policy = RetryPolicy(maxAttempts: 3)
        #expect(policy.shouldRetry(afterAttempt: 1))
        #expect(policy.shouldRetry(afterAttempt: 2))
        #expect(!policy.shouldRetry(afterAttempt: 3))
        #expect(RetryPolicy(maxAttempts: 1).schedule.isEmpty)
    }

    @Test func jitterShortensWithinBounds() {
        let policy = RetryPolicy(maxAttempts: 5, initialBackoff: .seconds(1), maxBackoff: .seconds(10), jitter: 0.25)
        #expect(policy.backoff(beforeAttempt: 3, unitRandom: 0) == .seconds(2))
        #expect(policy.backoff(beforeAttempt: 3, unitRandom: 0.5) == .milliseconds(1750))
        #expect(policy.backoff(beforeAttempt: 3, unitRandom: 0.999_999) > .milliseconds(1500))
        for _ in 0..<100 {
            let delay = policy.backoff(beforeAttempt: 4, unitRandom: Double.random(in: 0..<1))
            #expect(delay > .seconds(3) && delay <= .seconds(4))
        }
    }

    @Test func noWaitBeforeFirstAttemptAndHugeAttemptsStayCapped() {
        let policy = RetryPolicy(maxAttempts: 100, initialBackoff: .milliseconds(100), maxBackoff: .seconds(30), jitter: 0)
        #expect(policy.nominalBackoff(beforeAttempt: 1) == .zero)
        #expect(policy.nominalBackoff(beforeAttempt: 90) == .seconds(30))
    }
}
