import ContextClient
import ContextModel
import ContextProtocol
import ContextServer
import Foundation
import Testing

/// Duplicates caught at the door, through a real server: `dedupe` on `add` and in `add_batch`
/// items, the answers that name the memory the user had, `stats`, and the field's errors.
@Suite struct DedupeServerTests {
    @Test func aDuplicateIsAnsweredWithTheMemoryTheUserHad() async throws {
        let server = try await TestServer(dimension: 3)
        let socket = try RawSocket(port: server.port)
        socket.exchange(
            #"{"op":"add","user":"ana","id":"tea","text":"Ana likes green tea","vector":[1,0,0]}"#,
            #"{"ok":true,"id":"tea"}"#)
        socket.exchange(
            #"{"op":"add","user":"ana","text":" ana LIKES green   tea","vector":[0,1,0],"dedupe":"exact"}"#,
            #"{"ok":true,"id":"tea","duplicate":true}"#)
        socket.exchange(
            #"{"op":"add","user":"ana","id":"close","text":"something else","vector":[1,0.1,0],"dedupe":{"near":0.95}}"#,
            #"{"ok":true,"id":"tea","duplicate":true}"#)
        socket.exchange(
            #"{"op":"add_batch","items":[{"user":"ana","id":"new","text":"Ana plays chess","vector":[0,0,1],"dedupe":"exact"},"#
                + #"{"user":"ana","text":"Ana likes green tea","vector":[0,1,0],"dedupe":"exact"},"#
                + #"{"user":"ana","text":"ANA PLAYS CHESS","vector":[0,1,0],"dedupe":"exact"}]}"#,
            #"{"ok":true,"count":1,"skipped":0,"ids":["new"],"conflicts":[],"truncated":[],"duplicates":[{"item":1,"id":"tea"},{"item":2,"id":"new"}]}"#
        )
        socket.exchange(
            #"{"op":"get","user":"ana","ids":["close"]}"#, #"{"ok":true,"memories":[],"missing":["close"]}"#,
            now: FixedClock.now)
        #expect(socket.send(#"{"op":"stats"}"# + "\n"))
        let stats = try JSONParser.parse(Array(try #require(socket.readLine()).utf8)).objectValue
        #expect(stats?["memories"] == .integer(2) && stats?["duplicates"] == .integer(4))
        // Errors.
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"dedupe":"same"}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'dedupe' must be \"exact\" or {\"near\": similarity}, not 'same'"}}"#
        )
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"dedupe":{"near":0}}"#,
            #"{"ok":false,"error":{"code":"invalid_value","message":"'dedupe.near' must be above 0 and at most 1, not 0.0"}}"#
        )
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"dedupe":{"near":0.9,"exact":true}}"#,
            #"{"ok":false,"error":{"code":"unknown_field","message":"unknown field 'exact'; this accepts near"}}"#)
        socket.exchange(
            #"{"op":"add","user":"ana","text":"x","vector":[1,0,0],"dedupe":true}"#,
            #"{"ok":false,"error":{"code":"wrong_type","message":"'dedupe' must be \"exact\" or {\"near\": similarity}, not boolean"}}"#
        )
        // Each near item scans its user's vectors on the writer: 16 a batch, no more.
        func items(_ count: Int) -> String {
            (0..<count).map { #"{"user":"ana","text":"n\#($0)","vector":[1,0,0],"dedupe":{"near":0.99}}"# }
                .joined(separator: ",")
        }
        socket.exchange(
            #"{"op":"add_batch","items":[\#(items(17))]}"#,
            #"{"ok":false,"error":{"code":"too_large","message":"at most 16 items of a batch may ask for a near dedupe, not 17; split it"}}"#
        )
        #expect(socket.send(#"{"op":"add_batch","items":[\#(items(16))]}"# + "\n"))
        #expect(socket.readLine()?.hasPrefix(#"{"ok":true,"count":0,"skipped":0,"ids":[]"#) == true)
        await server.stop()
    }
}
