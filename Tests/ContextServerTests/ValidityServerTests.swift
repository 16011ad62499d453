import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import PromptBuilder
import Testing

/// Facts that change, through a real server: `supersedes` on `add`, what `get`, `search`,
/// `list` and `prompt` answer now, `as_of` a time, and with `include_superseded`, and the errors.
@Suite struct ValidityServerTests {
    static let day: Int64 = 86_400_000
    /// 8 May 2023, 00:00 UTC.
    static let start: Int64 = 1_683_504_000_000

    func server() async throws -> TestServer {
        try await TestServer(dimension: 3) { $0.prompts = PromptSettings(counter: .estimate) }
    }

    @Test func aSupersededFactIsHistory() async throws {
        let server = try await server()
        let socket = try RawSocket(port: server.port)
        let lisbon = #""user":"ana","session":"s","text":"Ana lives in Lisbon","vector":[1,0,0]"#
        let porto = #""user":"ana","session":"s","text":"Ana moved to Porto","vector":[1,0.1,0]"#
        socket.exchange(
            #"{"op":"add","id":"lisbon",\#(lisbon),"created_at":\#(Self.start)}"#, #"{"ok":true,"id":"lisbon"}"#)
        socket.exchange(
            #"{"op":"add","id":"porto",\#(porto),"created_at":\#(Self.start + 10 * Self.day),"supersedes":"lisbon"}"#,
            #"{"ok":true,"id":"porto"}"#)
        let old =
            #"{"id":"lisbon","user":"ana","session":"s","role":null,"speaker":null,"text":"Ana lives in Lisbon","#
            + #""created_at":1683504000000,"metadata":{},"valid_to":1684368000000,"superseded_by":"porto"}"#
        let new =
            #"{"id":"porto","user":"ana","session":"s","role":null,"speaker":null,"text":"Ana moved to Porto","#
            + #""created_at":1684368000000,"metadata":{},"supersedes":"lisbon"}"#
        func hit(_ memory: String, _ score: String) -> String {
            memory.replacingOccurrences(of: #"","user""#, with: #"","score":\#(score),"user""#)
        }
        // `get` names a memory: it answers it whatever its validity.
        socket.exchange(
            #"{"op":"get","user":"ana","ids":["lisbon","porto"]}"#,
            #"{"ok":true,"memories":[\#(old),\#(new)],"missing":[]}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[1,0,0],"k":5}"#,
            #"{"ok":true,"hits":[\#(hit(new, "0.9950372"))]}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[1,0,0],"k":5,"as_of":"2023-05-17T23:59:59.999Z"}"#,
            #"{"ok":true,"hits":[\#(hit(old, "1.0"))]}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[1,0,0],"k":5,"include_superseded":true}"#,
            #"{"ok":true,"hits":[\#(hit(old, "1.0")),\#(hit(new, "0.9950372"))]}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"list","user":"ana","as_of":\#(Self.start + 10 * Self.day)}"#,
            #"{"ok":true,"memories":[\#(new)],"next_cursor":null}"#, now: FixedClock.now)
        socket.exchange(
            #"{"op":"list","user":"ana","as_of":\#(Self.start - 1)}"#, #"{"ok":true,"memories":[],"next_cursor":null}"#,
            now: FixedClock.now)
        socket.exchange(
            #"{"op":"list","user":"ana","include_superseded":true}"#,
            #"{"ok":true,"memories":[\#(old),\#(new)],"next_cursor":null}"#, now: FixedClock.now)
        // The prompt of now holds the new fact alone; as of before the move, the old one alone.
        let system =
            "Answer the user's message. Use the memories below where they help; each says when it was said and by whom."
        func sections(_ id: String) -> String {
            #""sections":[{"name":"system","tokens":27,"ids":[]},{"name":"pinned","tokens":0,"ids":[]},"#
                + #"{"name":"memories","tokens":14,"ids":["\#(id)"]},{"name":"summary","tokens":0,"ids":[]},"#
                + #"{"name":"recent","tokens":0,"ids":[]},{"name":"query","tokens":5,"ids":[]}],"#
        }
        socket.exchange(
            #"{"op":"prompt","user":"ana","query":"Where does Ana live?","vector":[1,0,0],"format":"text"}"#,
            #"{"ok":true,"prompt":"\#(system)\n\nRelevant memories:\n18 May 2023:\n- Ana moved to Porto\n\nWhere does Ana live?","#
                + #""tokens":46,"counter":"estimate",\#(sections("porto"))"used":["porto"],"dropped":[]}"#,
            now: FixedClock.now)
        socket.exchange(
            #"{"op":"prompt","user":"ana","query":"Where did Ana live?","vector":[1,0,0],"as_of":"2023-05-09T00:00:00Z","format":"text"}"#,
            #"{"ok":true,"prompt":"\#(system)\n\nRelevant memories:\n8 May 2023:\n- Ana lives in Lisbon\n\nWhere did Ana live?","#
                + #""tokens":46,"counter":"estimate",\#(sections("lisbon"))"used":["lisbon"],"dropped":[]}"#,
            now: FixedClock.now)

        // Asked to, the new fact shows what held before, and until when.
        #expect(
            socket.send(
                #"{"op":"prompt","user":"ana","query":"Where does Ana live?","vector":[1,0,0],"show_changes":true}"#
                    + "\n"))
        let changedLine = try #require(socket.readLine())
        let changed = try #require(try JSONParser.parse(Array(changedLine.utf8)).objectValue)
        #expect(
            changed["prompt"]?.stringValue?.contains(
                "18 May 2023:\n- Ana moved to Porto (until 18 May 2023: Ana lives in Lisbon)\n") == true)
        #expect(try changed.strings("used") == ["porto"])

        // Errors, each with its code; the connection goes on.
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[1,0,0],"as_of":1,"include_superseded":true}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'as_of' reads what held at one time; 'include_superseded' reads all: give one"}}"#
        )
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"supersedes":"nobody"}"#,
            #"{"ok":false,"error":{"code":"not_found","message":"item 0 supersedes 'nobody', which user 'ana' does not have"}}"#
        )
        socket.exchange(
            #"{"op":"add_batch","items":[{"user":"ana","text":"x","vector":[1,0,0],"supersedes":"lisbon"}]}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"item 0: 'lisbon' was already superseded by 'porto'; supersede that one"}}"#
        )
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"supersedes":""}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'supersedes' must not be empty"}}"#)
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"valid_from":"soon"}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'valid_from' must be unix milliseconds or an ISO 8601 time like 2023-05-08T13:56:00Z, not 'soon'"}}"#
        )
        socket.exchange(
            #"{"op":"search","user":"ana","vector":[1,0,0],"as_of":true}"#,
            #"{"ok":false,"error":{"code":"wrong_type","message":"'as_of' must be unix milliseconds or an ISO 8601 string, not boolean"}}"#
        )
        // A prompt reads one time: the history is for search and list.
        let refused = try #require(
            {
                #expect(socket.send(#"{"op":"prompt","user":"ana","query":"q","include_superseded":true}"# + "\n"))
                return socket.readLine()
            }())
        #expect(
            refused.hasPrefix(
                #"{"ok":false,"error":{"code":"unknown_field","message":"unknown field 'include_superseded'"#))
        socket.exchange(#"{"op":"ping"}"#, #"{"ok":true,"pong":true}"#)
        await server.stop()
    }
}
