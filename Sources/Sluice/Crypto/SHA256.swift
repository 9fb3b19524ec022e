import Crypto

/// SHA-256 and HMAC-SHA256 from swift-crypto (BoringSSL on Linux), in the shapes Sluice uses:
/// the `hash` transform rule, first-seen marks, the gateway's cache of verified tokens, keyed
/// pseudonyms and webhook signatures.
public enum SHA256 {
    /// The 32-byte digest of `message`.
    public static func digest(_ message: some Collection<UInt8>) -> [UInt8] {
        Array(Crypto.SHA256.hash(data: Array(message)))
    }

    /// The digest as 64 lowercase hex digits.
    public static func hex(_ message: some Collection<UInt8>) -> String {
        hexString(digest(message))
    }

    /// Bytes as lowercase hex digits, two per byte.
    public static func hexString(_ bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// HMAC-SHA256 (RFC 2104).
public enum HMACSHA256 {
    /// The 32-byte authentication code of `message` under `key`.
    public static func authenticationCode(for message: some Collection<UInt8>, key: some Collection<UInt8>) -> [UInt8] {
        Array(HMAC<Crypto.SHA256>.authenticationCode(for: Array(message), using: SymmetricKey(data: Array(key))))
    }
}
