import ContextModel
import ContextProtocol
import Foundation
import Testing

@testable import ContextServer

/// `export` through a real server: every field of every memory, in the order stored, a page at
/// a time; vectors as stored; the whole space for an admin only.
@Suite struct ExportTests {
    @Test func everyFieldInTheOrderStoredAPageAtATime() async throws {
        let server = try await TestServer(dimension: 3)
        let socket = try RawSocket(port: server.port)
        let at = 1_683_504_000_000
        for write in [
            #"{"op":"add","user":"ana","id":"lisbon","session":"s\u0000","role":"user","speaker":"Ana","text":"Ana lives in Lisbon \u0000","vector":[3,0,4],"created_at":\#(at),"metadata":{"n":9007199254740993}}"#,
            #"{"op":"add","user":"ana","id":"porto","text":"Ana moved to Porto","vector":[0,1,0],"created_at":\#(at + 1000),"supersedes":"lisbon","sources":["lisbon","doc:1"]}"#,
            #"{"op":"add","user":"bob","id":"b","text":"Bob's tea","vector":[1,0,0],"created_at":\#(at)}"#,
            #"{"op":"add","user":"ana","id":"code","text":"door code","vector":[1,0,0],"created_at":\#(at + 2000),"ttl":86400}"#,
            #"{"op":"feedback","user":"ana","id":"porto","helped":true}"#,
        ] {
            socket.send(write + "\n")
            #expect(socket.readLine()?.hasPrefix(#"{"ok":true"#) == true, "\(write)")
        }
        socket.send(#"{"op":"get","user":"ana","id":"code"}"# + "\n")
        let expiresAt = try #require(socket.readLine()?.firstMatch(of: /"expires_at":(\d+)/)?.1)
        let lisbon =
            #"{"id":"lisbon","user":"ana","session":"s\u0000","role":"user","speaker":"Ana","text":"Ana lives in Lisbon \u0000","created_at":\#(at),"metadata":{"n":9007199254740993},"valid_to":\#(at + 1000),"superseded_by":"porto"}"#
        let porto =
            #"{"id":"porto","user":"ana","session":null,"role":null,"speaker":null,"text":"Ana moved to Porto","created_at":\#(at + 1000),"metadata":{},"supersedes":"lisbon","sources":["lisbon","doc:1"],"helped":1,"not_helped":0}"#
        let code =
            #"{"id":"code","user":"ana","session":null,"role":null,"speaker":null,"text":"door code","created_at":\#(at + 2000),"metadata":{},"expires_at":\#(expiresAt)}"#
        // One user's, two a page: the first page says where the next begins.
        socket.exchange(
            #"{"op":"export","user":"ana","limit":2}"#, #"{"ok":true,"memories":[\#(lisbon),\#(porto)],"next":2}"#)
        socket.exchange(
            #"{"op":"export","user":"ana","after":2,"limit":2}"#, #"{"ok":true,"memories":[\#(code)],"next":null}"#)
        // Vectors as stored (normalized, for cosine): base64 float32.
        socket.send(#"{"op":"export","user":"ana","limit":1,"with_vector":true}"# + "\n")
        let answer = try #require(socket.readLine())
        let page = try Operations.Export.decode(answer: #require(JSONParser.parse(Array(answer.utf8)).objectValue))
        #expect(page.memories.map(\.memory.vector) == [[0.6, 0, 0.8]])
        #expect(answer.contains(#""vector":""# + Base64.encode([Float(0.6), 0, 0.8]) + #"""#))
        // Everyone's, for a server without keys (an admin's).
        socket.send(#"{"op":"export"}"# + "\n")
        #expect(
            socket.readLine()
                == #"{"ok":true,"memories":[\#(lisbon),\#(porto),\#(#"{"id":"b","user":"bob","session":null,"role":null,"speaker":null,"text":"Bob's tea","created_at":\#(at),"metadata":{}}"#),\#(code)],"next":null}"#
        )
        // Fields checked at decode.
        socket.exchange(
            #"{"op":"export","after":-1}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'after' must be between 0 and 9007199254740991, not -1"}}"#
        )
        socket.exchange(
            #"{"op":"export","limit":1001}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'limit' must be between 1 and 1000, not 1001"}}"#)
        await server.stop()
    }

    /// A key exports its own users alone; every user's needs an admin's key.
    @Test func aKeyExportsItsOwnUsersAlone() async throws {
        let server = try await TestServer(dimension: 2) { $0.keys = KeyRing(KeysTests.keys) }
        let root = try RawSocket(port: server.port)
        let reader = try RawSocket(port: server.port)
        root.exchange(#"{"op":"auth","secret":"root-secret-0123456789"}"#, #"{"ok":true,"key":"root","role":"admin"}"#)
        reader.exchange(
            #"{"op":"auth","secret":"reader-secret-0123456789"}"#, #"{"ok":true,"key":"reader","role":"read"}"#)
        for user in ["alice", "bob"] {
            root.exchange(
                #"{"op":"add","user":"\#(user)","id":"m","text":"tea","vector":[1,0],"created_at":1}"#,
                #"{"ok":true,"id":"m"}"#)
        }
        let alice =
            #"{"id":"m","user":"alice","session":null,"role":null,"speaker":null,"text":"tea","created_at":1,"metadata":{}}"#
        reader.exchange(#"{"op":"export","user":"alice"}"#, #"{"ok":true,"memories":[\#(alice)],"next":null}"#)
        reader.exchange(
            #"{"op":"export"}"#,
            #"{"ok":false,"error":{"code":"forbidden","message":"the export of every user needs an admin's key; name a user"}}"#
        )
        reader.send(#"{"op":"export","user":"bob"}"# + "\n")
        #expect(reader.readLine()?.contains(#""code":"forbidden""#) == true)
        root.send(#"{"op":"export"}"# + "\n")
        #expect(root.readLine()?.contains(#""user":"bob""#) == true)
        await server.stop()
    }
}
