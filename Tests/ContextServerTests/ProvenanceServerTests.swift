import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import PromptBuilder
import Testing

/// Where memories came from, through a real server: `sources` on `add`, in every answer that
/// carries a memory and in a prompt's answer, and `delete` and `forget` with `with_derived`.
@Suite struct ProvenanceServerTests {
    @Test func sourcesGoWhereTheMemoriesGo() async throws {
        let server = try await TestServer(dimension: 3) { $0.prompts = PromptSettings(counter: .estimate) }
        let socket = try RawSocket(port: server.port)
        let at = #""created_at":1683504000000"#
        socket.exchange(
            #"{"op":"add_batch","items":[{"id":"t1","user":"ana","session":"s","text":"I adopted a cat, Miso","vector":[1,0,0],\#(at)},"#
                + #"{"id":"t2","user":"ana","session":"s","text":"Miso likes tuna","vector":[0,1,0],\#(at)},"#
                + #"{"id":"f1","user":"ana","text":"Ana has a cat named Miso","vector":[0.6,0,0.8],"sources":["t1","t2"],\#(at)},"#
                + #"{"id":"f2","user":"ana","text":"Ana reads about cats","vector":[0,0,1],"sources":["doc:7\u0000p3"],\#(at)}]}"#,
            #"{"ok":true,"count":4,"skipped":0,"ids":["t1","t2","f1","f2"],"conflicts":[],"truncated":[]}"#)
        socket.exchange(
            #"{"op":"get","user":"ana","id":"f1"}"#,
            #"{"ok":true,"memory":{"id":"f1","user":"ana","session":null,"role":null,"speaker":null,"text":"Ana has a cat named Miso","#
                + #""created_at":1683504000000,"metadata":{},"sources":["t1","t2"]}}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[0,0,1],"k":1}"#,
            #"{"ok":true,"hits":[{"id":"f2","score":1.0,"user":"ana","session":null,"role":null,"speaker":null,"text":"Ana reads about cats","#
                + #""created_at":1683504000000,"metadata":{},"sources":["doc:7\u0000p3"]}]}"#, now: FixedClock.now)
        // A prompt lists the sources of what it used, each once.
        #expect(
            socket.send(#"{"op":"prompt","user":"ana","query":"Tell me about the cat","vector":[0.6,0,0.8]}"# + "\n"))
        let line = try #require(socket.readLine())
        let prompt = try #require(try JSONParser.parse(Array(line.utf8)).objectValue)
        let used = try prompt.strings("used")
        #expect(Set(used) == ["f1", "f2", "t1", "t2"])
        let named = ["f1": ["t1", "t2"], "f2": ["doc:7\u{0}p3"]]
        #expect(try prompt.strings("sources") == used.flatMap { named[$0] ?? [] })
        // Errors.
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"sources":"t1"}"#,
            #"{"ok":false,"error":{"code":"wrong_type","message":"'sources' must be an array of strings, not string"}}"#
        )
        let many = (0...64).map { #""s\#($0)""# }.joined(separator: ",")
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"sources":[\#(many)]}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'sources' holds at most 64 references, not 65"}}"#)
        // Deleting a turn with what was derived from it.
        socket.exchange(#"{"op":"delete","user":"ana","id":"t2","with_derived":true}"#, #"{"ok":true,"deleted":2}"#)
        socket.exchange(
            #"{"op":"get","user":"ana","ids":["t1","f1"]}"#,
            #"{"ok":true,"memories":[{"id":"t1","user":"ana","session":"s","role":null,"speaker":null,"text":"I adopted a cat, Miso","created_at":1683504000000,"metadata":{}}],"missing":["f1"]}"#,
            now: FixedClock.now)
        socket.exchange(
            #"{"op":"add","id":"f3","user":"ana","text":"Miso is a cat","vector":[1,0,0],"sources":["t1"]}"#,
            #"{"ok":true,"id":"f3"}"#)
        socket.exchange(
            #"{"op":"forget","user":"ana","session":"s","with_derived":true}"#,
            #"{"ok":true,"deleted":2,"receipt":{"memories":2,"keyword_rows":2,"window_rows":0,"source_rows":1,"vectors":2,"graph_nodes":0,"cache_entries":3,"left":{"memories":0,"keyword_rows":0,"window_rows":0,"source_rows":0,"vectors":0,"graph_nodes":0,"cache_entries":0,"records":0},"verified":true}}"#
        )
        socket.exchange(
            #"{"op":"get","user":"ana","ids":["t1","f3","f2"]}"#,
            #"{"ok":true,"memories":[{"id":"f2","user":"ana","session":null,"role":null,"speaker":null,"text":"Ana reads about cats","created_at":1683504000000,"metadata":{},"sources":["doc:7\u0000p3"]}],"missing":["t1","f3"]}"#,
            now: FixedClock.now)
        socket.exchange(
            #"{"op":"delete","user":"ana","id":"t1","with_derived":1}"#,
            #"{"ok":false,"error":{"code":"wrong_type","message":"'with_derived' must be a boolean, not number"}}"#)
        await server.stop()
    }
}
