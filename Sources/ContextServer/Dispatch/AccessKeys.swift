import ContextModel
import ContextProtocol
import Foundation
import Synchronization

/// What a key may do: `admin` everything; `app` read and write its users' memories; `read`
/// search, get, list and prompt on its users.
public enum AccessRole: String, Sendable, CaseIterable {
    case admin, app, read
}

/// What an op needs of the connection's key (a column of the op table).
enum Access: Sendable, Equatable {
    /// Nothing: `auth` itself.
    case anyone
    /// Any key (`ping`, `hello`: no user's data).
    case anyKey
    /// Reading the users the request names.
    case read
    /// Changing the users the request names.
    case write
    /// The whole space (`stats`, `backup`).
    case admin

    func allowed(for role: AccessRole) -> Bool {
        switch (self, role) {
        case (_, .admin), (.anyone, _), (.anyKey, _), (.read, _), (.write, .app): true
        default: false
        }
    }
}

/// A key of `serve --keys`: a name, a secret, a role and the users it may touch.
public struct AccessKey: Sendable, Equatable {
    /// The shortest secret a keys file may hold.
    public static let minimumSecretBytes = 16

    public var name: String
    var secret: [UInt8]
    public var role: AccessRole
    /// Exact user names, and prefixes written with a trailing `*` (`"team-a/*"`; `"*"` is every
    /// user). An admin key covers every user whatever it lists.
    public var users: [String]
    /// Its rate, for the key and for each user it touches; nil: no limit.
    public var rate: Rate?

    public init(name: String, secret: String, role: AccessRole, users: [String], rate: Rate? = nil) {
        self.name = name
        self.secret = Array(secret.utf8)
        self.role = role
        self.users = users
        self.rate = rate
    }

    /// Whether the key may touch `user`'s memories.
    public func covers(_ user: String) -> Bool {
        role == .admin
            || users.contains { pattern in
                pattern.hasSuffix("*")
                    ? user.utf8.starts(with: pattern.utf8.dropLast()) : user.utf8.elementsEqual(pattern.utf8)
            }
    }
}

/// Why a keys file was refused: the file, and what is wrong (never a secret).
public struct KeyFileError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// The server's keys, replaced whole when the keys file is read again (SIGHUP). A connection
/// holds its key's name and the key as the ring had it at a `version`; when the version moves on,
/// it looks the name up again, so a key removed from the file stops working at its next request.
public final class KeyRing: Sendable {
    private let keys: Mutex<[String: AccessKey]>
    private let replaced = Atomic<Int>(0)

    public init(_ keys: [AccessKey]) {
        self.keys = Mutex(Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) }))
    }

    /// Puts `keys` in place of the present ones.
    public func replace(_ keys: [AccessKey]) {
        let byName = Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })
        self.keys.withLock { $0 = byName }
        // After the keys: a connection that reads the new version finds the new keys.
        replaced.wrappingAdd(1, ordering: .releasing)
    }

    /// How many times the keys were replaced.
    var version: Int { replaced.load(ordering: .acquiring) }

    public var names: [String] { keys.withLock { $0.keys.sorted() } }

    /// Every key, by name.
    var all: [AccessKey] { keys.withLock { $0.values.sorted { $0.name < $1.name } } }

    func key(named name: String) -> AccessKey? { keys.withLock { $0[name] } }

    /// The key whose secret is `secret`. Every key's secret is compared in full, in time that
    /// depends only on the lengths, so the answer's timing tells nothing of any secret.
    func key(secret: String) -> AccessKey? {
        let offered = Array(secret.utf8)
        return keys.withLock { keys in
            var found: AccessKey?
            for key in keys.values where Self.equalInConstantTime(key.secret, offered) { found = key }
            return found
        }
    }

    /// Whether `a` and `b` are equal, looking at every byte of the longer whatever differs.
    static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }

    /// Reads a keys file:
    /// `{"keys":[{"name":"app-a","secret":"...","role":"app","users":["alice","team-a/*"]}]}`.
    /// - Throws: `KeyFileError` naming the file and the key (by position and name) at fault:
    ///   an unknown field, a missing or empty name, a secret shorter than 16 bytes, a role not
    ///   `admin`/`app`/`read`, an `app` or `read` key without users, a name or secret used twice.
    public static func load(path: String) throws(KeyFileError) -> [AccessKey] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KeyFileError(path: path, reason: "cannot read the file")
        }
        return try parse(Array(data), path: path)
    }

    static func parse(_ bytes: [UInt8], path: String) throws(KeyFileError) -> [AccessKey] {
        func fail(_ reason: String) -> KeyFileError { KeyFileError(path: path, reason: reason) }
        let root: JSONValue
        do {
            root = try bytes.withUnsafeBytes { buffer throws(JSONParseError) in try JSONParser.parse(buffer) }
        } catch {
            throw fail("not JSON: \(error)")
        }
        guard let object = root.objectValue else { throw fail("must be an object {\"keys\":[...]}") }
        do throws(ProtocolError) {
            try object.requireKnownFields(["keys"], envelope: false)
        } catch {
            throw fail(error.message)
        }
        guard let entries = object["keys"]?.arrayValue else { throw fail("needs \"keys\", an array") }
        var keys: [AccessKey] = []
        for (index, entry) in entries.enumerated() {
            let place = "keys[\(index)]"
            guard let fields = entry.objectValue else { throw fail("\(place) must be an object") }
            let key: AccessKey
            do throws(ProtocolError) {
                try fields.requireKnownFields(["name", "secret", "role", "users", "rate"], envelope: false)
                let name = try fields.required("name", as: "string", \.stringValue)
                let secret = try fields.required("secret", as: "string", \.stringValue)
                let roleName = try fields.required("role", as: "string", \.stringValue)
                guard !name.isEmpty else { throw ProtocolError(.invalidValue, "'name' is empty") }
                guard let role = AccessRole(rawValue: roleName) else {
                    throw ProtocolError(.invalidValue, "role must be admin, app or read, not '\(roleName)'")
                }
                guard secret.utf8.count >= AccessKey.minimumSecretBytes else {
                    throw ProtocolError(
                        .invalidValue, "the secret of '\(name)' is shorter than \(AccessKey.minimumSecretBytes) bytes")
                }
                let users = fields["users"] == nil ? [] : try fields.strings("users")
                guard role == .admin || !users.isEmpty else {
                    throw ProtocolError(.invalidValue, "'\(name)' (role \(role.rawValue)) has no users")
                }
                guard users.allSatisfy({ !$0.isEmpty }) else { throw ProtocolError(.invalidValue, "an empty user") }
                key = AccessKey(name: name, secret: secret, role: role, users: users, rate: try rate(fields))
            } catch {
                throw fail("\(place): \(error.message)")
            }
            guard !keys.contains(where: { $0.name == key.name }) else {
                throw fail("\(place): the name '\(key.name)' is used twice")
            }
            guard !keys.contains(where: { $0.secret == key.secret }) else {
                throw fail("\(place): '\(key.name)' has the secret of another key")
            }
            keys.append(key)
        }
        return keys
    }
}

/// A key's `rate`: `{"per_second": N, "burst": M}`, inside `Rate.perSecondRange` and
/// `Rate.burstRange`.
private func rate(_ fields: JSONObject) throws(ProtocolError) -> Rate? {
    guard let value = fields["rate"], value != .null else { return nil }
    guard let object = value.objectValue else {
        throw ProtocolError(.wrongType, "'rate' must be an object {\"per_second\":..,\"burst\":..}")
    }
    try object.requireKnownFields(["per_second", "burst"], envelope: false)
    let perSecond = try object.required("per_second", as: "number", \.numberValue)
    let burst = try object.required("burst", as: "number", \.numberValue)
    guard Rate.perSecondRange.contains(perSecond), Rate.burstRange.contains(burst) else {
        throw ProtocolError(
            .invalidValue,
            "'rate' needs per_second in \(Rate.perSecondRange) and burst in \(Rate.burstRange), not \(perSecond) and \(burst)"
        )
    }
    return Rate(perSecond: perSecond, burst: burst)
}

/// How a request reached the server.
enum FrontDoor: String, Sendable, CaseIterable {
    /// The line protocol.
    case tcp
    /// The HTTP/JSON API.
    case http
}

/// The key a connection authenticated with, if any: bound to the secret it proved, so that a
/// key whose secret is rotated (same name, new secret, SIGHUP) no longer serves connections that
/// proved the old one.
final class ConnectionSession: Sendable {
    /// The front door the requests come through (the metrics count requests by it).
    let door: FrontDoor

    init(door: FrontDoor = .tcp) {
        self.door = door
    }

    private struct State {
        var name: String?
        /// The secret the connection proved.
        var secret: [UInt8]?
        /// The key of that name as the ring had it at `version`, when its secret is still the
        /// one proved (nil: it has none).
        var cached: (version: Int, key: AccessKey?)?
    }

    private let state = Mutex(State())

    /// The key's name.
    var key: String? { state.withLock { $0.name } }

    /// The secret the connection proved, to prove it again where the request is forwarded.
    var secret: String? { state.withLock { $0.secret.map { String(decoding: $0, as: UTF8.self) } } }

    /// Binds the connection to `key` (nil: to none), as it is now, secret included.
    func authenticated(as key: AccessKey?) {
        state.withLock { $0 = State(name: key?.name, secret: key?.secret) }
    }

    /// The key's name, and the key as `keys` holds it now (nil when it was removed or its
    /// secret is no longer the one the connection proved).
    func accessKey(in keys: KeyRing) -> (name: String, key: AccessKey?)? {
        let version = keys.version
        return state.withLock { state -> (name: String, key: AccessKey?)? in
            guard let name = state.name, let secret = state.secret else { return nil }
            if let cached = state.cached, cached.version == version { return (name, cached.key) }
            let key = keys.key(named: name).flatMap { $0.secret == secret ? $0 : nil }
            state.cached = (version, key)
            return (name, key)
        }
    }
}
