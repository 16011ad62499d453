import ContextModel
import ContextProtocol
import Testing

@testable import ContextServer

@Suite struct OperationTableTests {
    func decode(_ text: String) throws(ProtocolError) -> (OperationDescriptor, Call) {
        guard case .object(let object) = try! JSONParser.parse(text) else { fatalError("test input must be an object") }
        return try OperationTable.decode(object)
    }

    func code(_ text: String) -> ErrorCode? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func everyOpHasOneRow() {
        #expect(
            OperationTable.descriptors.map(\.name).sorted()
                == [
                    "add", "add_batch", "auth", "backup", "check", "cluster", "delete", "digest", "embed", "export",
                    "feedback",
                    "forget",
                    "get", "hello", "keys", "list", "metrics", "ping", "prompt", "search", "sessions", "slow_requests",
                    "stats", "update", "users",
                ])
        #expect(OperationTable.byName.count == OperationTable.descriptors.count)
    }

    @Test func placesEachOp() throws {
        let placements = Dictionary(uniqueKeysWithValues: OperationTable.descriptors.map { ($0.name, $0.placement) })
        #expect(
            placements == [
                "ping": .eventLoop, "hello": .eventLoop, "auth": .eventLoop, "metrics": .eventLoop,
                "search": .eventLoop, "get": .eventLoop,
                "stats": .eventLoop, "keys": .eventLoop, "slow_requests": .eventLoop,
                "embed": .computePool, "prompt": .computePool, "list": .computePool, "sessions": .computePool,
                "backup": .computePool, "digest": .computePool, "export": .computePool, "cluster": .computePool,
                "users": .computePool,
                "check": .computePool,
                "add": .writer, "add_batch": .writer, "delete": .writer, "feedback": .writer, "forget": .writer,
                "update": .writer,
            ])
        #expect(try decode(#"{"op":"forget","user":"u"}"#).0.writes)
        #expect(try !decode(#"{"op":"search","user":"u","vector":[1]}"#).0.writes)
    }

    /// What each op needs of a key; the admin's ops touch no user, the others name theirs.
    @Test func saysWhatEachOpNeedsOfAKey() throws {
        let access = Dictionary(uniqueKeysWithValues: OperationTable.descriptors.map { ($0.name, $0.access) })
        #expect(
            access == [
                "auth": .anyone, "ping": .anyKey, "hello": .anyKey, "embed": .write, "search": .read, "get": .read,
                "list": .read, "sessions": .read, "prompt": .read, "add": .write, "add_batch": .write,
                "update": .write, "delete": .write, "forget": .write, "feedback": .write, "stats": .anyKey,
                "backup": .admin, "metrics": .anyKey, "digest": .read, "export": .read, "cluster": .admin,
                "users": .read,
                "keys": .admin, "slow_requests": .admin, "check": .admin,
            ])
        #expect(
            try decode(
                #"{"op":"add_batch","items":[{"user":"a","text":"t","vector":[1]},{"user":"b","text":"t","vector":[1]}]}"#
            ).1.users == ["a", "b"])
        #expect(try decode(#"{"op":"prompt","user":"u","query":"q","session":"s"}"#).1.users == ["u"])
        #expect(try decode(#"{"op":"update","user":"u","id":"i","metadata":{}}"#).1.users == ["u"])
        // A prompt or an embed of 64 texts costs more than a ping; auth costs nothing.
        #expect(try decode(#"{"op":"ping"}"#).1.cost == 1 && decode(#"{"op":"auth","secret":"s"}"#).1.cost == 0)
        #expect(try decode(#"{"op":"prompt","user":"u","query":"q"}"#).1.cost == 5)
        let texts = (0..<64).map { _ in #""t""# }.joined(separator: ",")
        #expect(try decode(#"{"op":"embed","texts":[\#(texts)]}"#).1.cost == 9)
    }

    @Test func marksWorkForThePool() throws {
        #expect(try !decode(#"{"op":"search","user":"u","vector":[1]}"#).1.needsComputePool)
        #expect(try !decode(#"{"op":"search","user":"u","vector":[1],"session":"s"}"#).1.needsComputePool)
        #expect(try decode(#"{"op":"search","user":"u","query":"x"}"#).1.needsComputePool)
        #expect(try !decode(#"{"op":"search","user":"u","query":"x","vector":[1],"mode":"vector"}"#).1.needsComputePool)
        #expect(try decode(#"{"op":"search","user":"u","query":"x","vector":[1]}"#).1.needsComputePool)
        #expect(try decode(#"{"op":"search","user":"u","vector":[1],"where":{"a":1}}"#).1.needsComputePool)
        #expect(
            try decode(#"{"op":"add_batch","items":[{"user":"u","text":"t","vector":[1]},{"user":"u","text":"t"}]}"#)
                .1.needsComputePool)
        #expect(try decode(#"{"op":"add","user":"u","text":"t"}"#).1.needsComputePool)
        #expect(try !decode(#"{"op":"add","user":"u","text":"t","vector":[1]}"#).1.needsComputePool)
    }

    @Test func refusesWhatNamesNoOp() {
        #expect(code(#"{"rid":1}"#) == .missingField)
        #expect(code(#"{"op":3}"#) == .wrongType)
        #expect(code(#"{"op":"launch"}"#) == .unknownOp)
        #expect(code(#"{"op":"get"}"#) == .missingField)
    }
}
