import MemoryStore
import Testing
import VectorIndex

@testable import ContextProtocol

@Suite struct RequestTests {
    func decode(_ text: String) throws(ProtocolError) -> Request {
        guard case .object(let object) = try! JSONParser.parse(text) else { fatalError("test input must be an object") }
        return try Request(object)
    }

    func code(_ text: String) -> ErrorCode? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func decodesEachOperation() throws {
        #expect(try decode(#"{"op":"ping"}"#) == .ping)
        #expect(try decode(#"{"op":"hello","rid":1}"#) == .hello)
        #expect(try decode(#"{"op":"stats"}"#) == .stats)
        #expect(try decode(#"{"op":"get","id":"x"}"#) == .get(id: "x"))
        #expect(try decode(#"{"op":"delete","id":"x"}"#) == .delete(id: "x"))
        #expect(try decode(#"{"op":"forget","user":"u"}"#) == .forget(user: "u"))
        #expect(
            try decode(
                #"{"op":"add","user":"u","text":"hi","vector":[1,2],"session":"s","role":"tool","created_at":5,"metadata":{"b":[1, "x"]},"id":"m"}"#
            )
                == .add(
                    NewMemory(
                        id: "m", user: "u", session: "s", role: .tool, text: "hi", createdAt: 5,
                        metadata: #"{"b":[1,"x"]}"#, vector: [1, 2]), model: nil))
        #expect(
            try decode(
                #"{"op":"add_batch","items":[{"user":"u","text":"a","vector":[1]},{"user":"v","text":"b","vector":[2]}]}"#
            )
                == .addBatch(
                    [NewMemory(user: "u", text: "a", vector: [1]), NewMemory(user: "v", text: "b", vector: [2])],
                    model: nil, ifAbsent: false))
        #expect(
            try decode(
                #"{"op":"search","user":"u","vector":[0.5],"k":3,"session":"s","role":"user","since":1,"until":2}"#)
                == .search(
                    SearchRequest(
                        user: "u", vector: [0.5], k: 3,
                        filter: RowFilter(session: "s", role: "user", since: 1, until: 2))))
        #expect(
            try decode(#"{"op":"search","user":"u","vector":[0.5]}"#)
                == .search(SearchRequest(user: "u", vector: [0.5], k: 5)))
        #expect(
            try decode(#"{"op":"search","user":"u","query":"tea?"}"#)
                == .search(SearchRequest(user: "u", query: "tea?")))
        #expect(
            try decode(#"{"op":"search","user":"u","vector":[0.5],"ef":200,"exact":true}"#)
                == .search(SearchRequest(user: "u", vector: [0.5], ef: 200, exact: true)))
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":0}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":10001}"#) == .invalidValue)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"ef":"wide"}"#) == .wrongType)
        #expect(code(#"{"op":"search","user":"u","vector":[0.5],"exact":1}"#) == .wrongType)
        #expect(try decode(#"{"op":"embed","texts":["a","b"]}"#) == .embed(["a", "b"]))
        #expect(
            try decode(#"{"op":"add","user":"u","text":"hi","model":"m"}"#)
                == .add(NewMemory(user: "u", text: "hi", vector: []), model: "m"))
    }

    @Test func vectorsMayTravelAsBase64Float32() throws {
        let vector: [Float] = [0.1, -2.5, 3e-8, 1e30]
        let encoded = Base64.encode(vector)
        #expect(Base64.encode([1]) == "AACAPw==")
        #expect(Base64.decodeFloats(encoded) == vector)
        #expect(
            try decode(#"{"op":"search","user":"u","vector":"\#(encoded)"}"#)
                == .search(SearchRequest(user: "u", vector: vector)))
        #expect(code(#"{"op":"search","user":"u","vector":"AACAPw="}"#) == .wrongType)  // not a multiple of 4
        #expect(code(#"{"op":"search","user":"u","vector":"AACA"}"#) == .wrongType)  // 3 bytes
        #expect(code(#"{"op":"search","user":"u","vector":"\#(Base64.encode([.nan]))"}"#) == .nonFinite)
        #expect(
            try decode(#"{"op":"add_batch","if_absent":true,"items":[{"user":"u","text":"a","vector":[1]}]}"#)
                == .addBatch([NewMemory(user: "u", text: "a", vector: [1])], model: nil, ifAbsent: true))
        #expect(code(#"{"op":"add_batch","if_absent":1,"items":[{"user":"u","text":"a","vector":[1]}]}"#) == .wrongType)
    }

    @Test func marksWritesAndWorkForTheModel() throws {
        #expect(try decode(#"{"op":"forget","user":"u"}"#).isWrite)
        #expect(try !decode(#"{"op":"search","user":"u","vector":[1]}"#).isWrite)
        #expect(try !decode(#"{"op":"search","user":"u","vector":[1]}"#).needsEmbedding)
        #expect(try decode(#"{"op":"search","user":"u","query":"x"}"#).needsEmbedding)
        #expect(try decode(#"{"op":"embed","texts":["x"]}"#).needsEmbedding)
        #expect(
            try decode(#"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","text":"t"}]}"#)
                .needsEmbedding)
        #expect(try !decode(#"{"op":"add","user":"u","text":"t","vector":[1]}"#).needsEmbedding)
    }

    @Test func reportsExactErrorCodes() {
        #expect(code(#"{"rid":1}"#) == .missingField)
        #expect(code(#"{"op":3}"#) == .wrongType)
        #expect(code(#"{"op":"launch"}"#) == .unknownOp)
        #expect(code(#"{"op":"get"}"#) == .missingField)
        #expect(code(#"{"op":"get","id":null}"#) == .missingField)
        #expect(code(#"{"op":"get","id":7}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","vector":[1]}"#) == .missingField)
        #expect(code(#"{"op":"add","user":"","text":"t","vector":[1]}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"role":"robot"}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"id":""}"#) == .invalidValue)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":"1,2"}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,"2"]}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[]}"#) == .wrongDimension)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,NaN]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1,-Infinity]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1e300]}"#) == .nonFinite)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"metadata":[1]}"#) == .wrongType)
        #expect(code(#"{"op":"add","user":"u","text":"t","vector":[1],"created_at":1.5}"#) == .wrongType)
        #expect(code(#"{"op":"add_batch","items":[]}"#) == .invalidValue)
        #expect(code(#"{"op":"add_batch","items":[1]}"#) == .wrongType)
        #expect(
            code(#"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","vector":[1]}]}"#)
                == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":0}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":1001}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":1000000000}"#) == .kOutOfRange)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"k":"5"}"#) == .wrongType)
        #expect(code(#"{"op":"search","vector":[1]}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","query":3}"#) == .wrongType)
        #expect(code(#"{"op":"embed","texts":[]}"#) == .invalidValue)
        #expect(code(#"{"op":"embed","texts":["a",1]}"#) == .wrongType)
        #expect(code(#"{"op":"embed"}"#) == .missingField)
        #expect(code(#"{"op":"search","user":"u","vector":[1],"since":"yesterday"}"#) == .wrongType)
    }

    @Test func namesTheFailingBatchItem() {
        do {
            _ = try decode(
                #"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","text":"t","vector":[NaN]}]}"#
            )
            Issue.record("expected an error")
        } catch {
            #expect(error == ProtocolError(.nonFinite, "items[1]: vector[0] is not a finite float32 (nan)"))
        }
    }

    @Test func encodesResponses() {
        let ok = Response.success(rid: "r1") { writer in
            writer.field("pong")
            writer.bool(true)
        }
        #expect(String(decoding: ok, as: UTF8.self) == "{\"ok\":true,\"rid\":\"r1\",\"pong\":true}\n")
        let failure = Response.failure(rid: nil, ProtocolError(.notFound, "no \"x\""))
        #expect(
            String(decoding: failure, as: UTF8.self)
                == "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"no \\\"x\\\"\"}}\n")
    }

    @Test func memoryRoundTripsThroughTheWire() throws {
        let memory = Memory(
            id: "m", user: "u", session: "s", role: .assistant, text: "t\n", createdAt: 42,
            metadata: #"{"a":{"b":null}}"#, vector: [0.25, -1])
        var writer = JSONWriter()
        writer.memory(memory)
        guard case .object(let object) = try JSONParser.parse(writer.bytes) else {
            Issue.record("not an object")
            return
        }
        #expect(try Memory(json: object) == memory)
    }
}
