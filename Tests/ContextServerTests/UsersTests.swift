import ContextModel
import ContextProtocol
import ContextServer
import MemoryStore
import Testing

/// `users`: a server's users by prefix, in the byte order of their ids, a page at a time; a key
/// that covers some users sees those alone.
@Suite struct UsersTests {
    static func ids(_ answer: JSONObject?) -> [String] {
        (answer?["users"]?.arrayValue ?? []).compactMap { $0.objectValue?["user"]?.stringValue }
    }

    @Test func usersArePagedByPrefixInByteOrderAndScopedByKey() async throws {
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys) }
        let client = try await server.client()
        func send(_ line: String) async throws -> JSONObject {
            try await client.roundTrip(line: Array(line.utf8))
        }
        _ = try await send(#"{"op":"auth","secret":"root-secret-0123456789"}"#)
        for user in ["a", "a", "a/1", "a\u{0}x", "ab", "b", "team-a/x", "team-a/y", "alice", "é"] {
            var writer = JSONWriter()
            writer.string(user)
            let added = try await send(
                #"{"op":"add","user":"# + String(decoding: writer.bytes, as: UTF8.self)
                    + #","text":"t","vector":[1,0]}"#)
            #expect(added["ok"] == .bool(true), "\(added)")
        }
        // Byte order: "a" < "a\0x" < "a/1" < "ab" < "alice"; pages of two, resumed with `next`.
        let first = try await send(#"{"op":"users","prefix":"a","limit":2}"#)
        #expect(Self.ids(first) == ["a", "a\u{0}x"])
        #expect(first["users"]?.arrayValue?.first?.objectValue?["memories"] == .integer(2))
        #expect(first["next"] == .string("a\u{0}x"))
        let second = try await send(#"{"op":"users","prefix":"a","limit":2,"after":"a\u0000x"}"#)
        #expect(Self.ids(second) == ["a/1", "ab"])
        let third = try await send(#"{"op":"users","prefix":"a","limit":2,"after":"ab"}"#)
        #expect(Self.ids(third) == ["alice"])
        #expect(third["next"] == .null)
        let all = try await send(#"{"op":"users"}"#)
        #expect(Self.ids(all) == ["a", "a\u{0}x", "a/1", "ab", "alice", "b", "team-a/x", "team-a/y", "é"])
        #expect(Self.ids(try await send(#"{"op":"users","prefix":"é"}"#)) == ["é"])
        #expect(Self.ids(try await send(#"{"op":"users","prefix":"zz"}"#)) == [])
        for (line, code) in [
            (#"{"op":"users","limit":0}"#, "invalid_value"), (#"{"op":"users","limit":1001}"#, "invalid_value"),
            (#"{"op":"users","colour":1}"#, "unknown_field"), (#"{"op":"users","prefix":1}"#, "wrong_type"),
        ] {
            #expect((try await send(line))["error"]?.objectValue?["code"] == .string(code), "\(line)")
        }
        await client.close()

        // A key that covers alice and team-a/* sees those users alone, whatever it asks.
        let app = try await server.client()
        _ = try await app.roundTrip(line: Array(#"{"op":"auth","secret":"app-a-secret-0123456789"}"#.utf8))
        let scoped = try await app.roundTrip(line: Array(#"{"op":"users"}"#.utf8))
        #expect(Self.ids(scoped) == ["alice", "team-a/x", "team-a/y"])
        let paged = try await app.roundTrip(line: Array(#"{"op":"users","limit":1,"after":"alice"}"#.utf8))
        #expect(Self.ids(paged) == ["team-a/x"])
        await app.close()
        await server.stop()
    }

    /// A page reads at most `scanLimit` users, whatever the key lets it show: a key that covers
    /// few users pages through the others with empty pages and `next`, never one long scan.
    @Test func aPageScansBoundedlyAndResumesWhereItStopped() async throws {
        let server = try await TestServer(dimension: 2)
        for user in ["a", "b", "c", "d", "e"] {
            _ = try server.store.add([NewMemory(user: user, text: "t", vector: [1, 0])])
        }
        var pages: [[String]] = []
        var after: String?
        repeat {
            let page = try server.store.users(prefix: "", after: after, limit: 10, scanLimit: 2) { $0 == "e" }
            pages.append(page.users.map(\.user))
            after = page.next
        } while after != nil && pages.count < 10
        #expect(pages == [[], [], ["e"]])
        await server.stop()
    }
}
