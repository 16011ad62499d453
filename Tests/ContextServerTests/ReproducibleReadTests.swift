import ContextModel
import ContextServer
import Foundation
import Logging
import MemoryStore
import PromptBuilder
import Testing
import VectorIndex

/// Reads that depend on time (expiry, recency, which facts hold) take `now` and answer with the
/// `now` they used: the same request at the same `now` on the same data gives the same bytes,
/// through the result cache or not, before and after a restart; another `now` gives another
/// answer where time matters.
@Suite struct ReproducibleReadTests {
    static let hour: Int64 = 3_600_000
    static let day = 24 * hour

    /// Serves the space at `path` until `body` returns.
    func serving<T>(
        _ path: String, index: SpaceIndex, cacheBytes: Int, _ body: (RawSocket) throws -> T
    ) async throws -> T {
        let store = try MemoryStore(path: path, dimension: 3, metric: .cosine, index: index)
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, threads: 2)
        configuration.prompts = PromptSettings(counter: .estimate)
        configuration.resultCacheBytes = cacheBytes
        let server = try await ContextStoreServer(
            store: store, configuration: configuration, logger: Logger(label: "test"))
        let result = Result { try body(try RawSocket(port: server.port)) }
        await server.shutdown()
        store.close()
        return try result.get()
    }

    static func ask(_ socket: RawSocket, _ line: String) -> String {
        socket.send(line + "\n")
        return socket.readLine() ?? "no answer"
    }

    @Test(arguments: [SpaceIndex.flat, .hnsw(HNSWParameters())], [0, 1 << 20])
    func theSameNowGivesTheSameBytes(index: SpaceIndex, cacheBytes: Int) async throws {
        let folder = TemporaryFolder()
        let path = folder.path + "/space.db"
        // Stored a minute ago, so that nothing expires or is purged while the test runs.
        let t0 = Clock.nowMilliseconds() - 60_000
        let (early, late) = (t0 + Self.hour, t0 + 3 * Self.day)
        let writes = [
            #"{"op":"add","user":"ana","id":"lisbon","session":"s","text":"Ana lives in Lisbon","vector":[1,0,0],"created_at":\#(t0 - 10 * Self.day)}"#,
            // Holds from tomorrow: before then Lisbon does.
            #"{"op":"add","user":"ana","id":"porto","session":"s","text":"Ana moves to Porto","vector":[1,0.1,0],"created_at":\#(t0),"valid_from":\#(t0 + Self.day),"supersedes":"lisbon"}"#,
            // Forgotten two hours after it was said.
            #"{"op":"add","user":"ana","id":"code","session":"s","text":"The door code is 4512","vector":[0,1,0],"created_at":\#(t0),"ttl":7200}"#,
            #"{"op":"add","user":"ana","id":"tea","session":"t","text":"Ana drinks green tea","vector":[0.6,0.8,0],"created_at":\#(t0 - 100 * Self.day)}"#,
        ]
        let reads = [
            #"{"op":"search","user":"ana","vector":[1,0.3,0],"k":5}"#,
            #"{"op":"search","user":"ana","vector":[1,0.3,0],"k":5,"half_life":86400,"explain":true}"#,
            #"{"op":"search","user":"ana","query":"Ana","mode":"keyword","k":5,"half_life":3600}"#,
            #"{"op":"get","user":"ana","ids":["lisbon","porto","code","tea"]}"#,
            #"{"op":"list","user":"ana"}"#,
            #"{"op":"sessions","user":"ana"}"#,
            #"{"op":"users"}"#,
            #"{"op":"prompt","user":"ana","query":"Where does Ana live?","vector":[1,0.3,0],"session":"s","budget":400,"format":"text"}"#,
        ]
        let at = { (now: Int64) in reads.map { FixedClock.at($0, now) } }
        let (first, again, later) = try await serving(path, index: index, cacheBytes: cacheBytes) { socket in
            for write in writes { #expect(Self.ask(socket, write).hasPrefix(#"{"ok":true"#), "\(write)") }
            // A memory holds from its start (`valid_from`, else `created_at`): the day before,
            // neither the move nor the code had been said.
            let before = Self.ask(socket, FixedClock.at(#"{"op":"list","user":"ana"}"#, t0 - Self.day))
            #expect(
                before.contains(#""id":"lisbon""#) && !before.contains(#""id":"porto""#)
                    && !before.contains(#""id":"code""#))
            let first = at(early).map { Self.ask(socket, $0) }
            let later = at(late).map { Self.ask(socket, $0) }
            return (first, at(early).map { Self.ask(socket, $0) }, later)
        }
        #expect(again == first)
        // After a restart, the same bytes.
        let reopened = try await serving(path, index: index, cacheBytes: cacheBytes) { socket in
            (at(early).map { Self.ask(socket, $0) }, at(late).map { Self.ask(socket, $0) })
        }
        #expect(reopened.0 == first)
        #expect(reopened.1 == later)
        for (answer, laterAnswer) in zip(first, later) {
            #expect(answer.hasSuffix(#","now":\#(early)}"#), "\(answer)")
            #expect(laterAnswer.hasSuffix(#","now":\#(late)}"#), "\(laterAnswer)")
        }
        // Where time matters, another time gives another answer: within the hour Lisbon holds
        // and the code is there; three days on, Porto holds and the code is gone.
        func ids(_ answer: String) -> [String] {
            answer.split(separator: #""id":""#).dropFirst().map { String($0.prefix { $0 != "\"" }) }
        }
        #expect(ids(first[0]) == ["lisbon", "tea", "code"])
        #expect(ids(later[0]) == ["porto", "tea"])
        #expect(ids(first[3]) == ["lisbon", "porto", "code", "tea"])
        #expect(ids(later[3]) == ["lisbon", "porto", "tea"])
        #expect(ids(first[4]) == ["tea", "lisbon", "code"])
        #expect(ids(later[4]) == ["tea", "porto"])
        // A session counts its turns, superseded or not, until they expire.
        #expect(first[5].contains(#"{"session":"s","turns":3,"#) && later[5].contains(#"{"session":"s","turns":2,"#))
        #expect(
            first[6].contains(#"{"user":"ana","memories":4}"#) && later[6].contains(#"{"user":"ana","memories":3}"#))
        #expect(first[7].contains("Ana lives in Lisbon") && !first[7].contains("Porto"))
        #expect(later[7].contains("Ana moves to Porto") && !later[7].contains("Lisbon"))
        // Recency weighs by age at `now`: the explained factors differ between the two times.
        // (The answers without their `now`, which differs anyway.)
        func hits(_ answer: String) -> Substring { answer.prefix { $0 != "]" } }
        #expect(hits(first[1]) != hits(later[1]) && hits(first[2]) != hits(later[2]))
    }

    /// A read without `now` runs at the server's clock, and says when that was.
    @Test func aReadWithoutNowSaysTheClocksTime() async throws {
        let server = try await TestServer(dimension: 3)
        let socket = try RawSocket(port: server.port)
        let before = Clock.nowMilliseconds()
        let answer = Self.ask(socket, #"{"op":"list","user":"ana"}"#)
        let after = Clock.nowMilliseconds()
        let prefix = #"{"ok":true,"memories":[],"next_cursor":null,"now":"#
        #expect(answer.hasPrefix(prefix))
        let now = Int64(answer.dropFirst(prefix.count).dropLast()) ?? 0
        #expect((before...after).contains(now), "\(answer)")
        // An answer that does not depend on time has none; a `now` out of range is refused.
        #expect(Self.ask(socket, #"{"op":"ping"}"#) == #"{"ok":true,"pong":true}"#)
        #expect(
            Self.ask(socket, #"{"op":"list","user":"ana","now":253402300800000}"#)
                == #"{"ok":false,"error":{"code":"invalid_value","message":"'now' must be a time in the years 0001 to 9999 (unix milliseconds -62135596800000...253402300799999), not 253402300800000"}}"#
        )
        #expect(
            Self.ask(socket, #"{"op":"get","user":"ana","id":"x","now":true}"#)
                == #"{"ok":false,"error":{"code":"wrong_type","message":"'now' must be unix milliseconds or an ISO 8601 string, not boolean"}}"#
        )
        await server.stop()
    }
}
