import ContextModel

/// One operation of the protocol: its wire name and the typed codecs of its request and of its
/// answer. The server decodes requests and encodes answers with them, the client the other way
/// round, so the two cannot drift apart.
///
/// A request line is `{"op":"<name>","rid":...,<fields>}`; a success line is
/// `{"ok":true,"rid":...,<answer fields>}` (see `Response`).
public protocol WireOperation: SendableMetatype {
    /// What the request carries.
    associatedtype Arguments: Sendable, Equatable
    /// What a successful answer carries.
    associatedtype Answer: Sendable, Equatable

    /// The `op` of the request line.
    static var name: String { get }
    /// The fields a request may have besides `op` and `rid`, with their types and ranges.
    static var requestFields: [FieldSpec] { get }
    /// Their names; any other field is `unknown_field`.
    static var fields: Set<String> { get }

    /// Writes the request's fields, each preceded by a comma, after `"op":"<name>"`.
    static func encode(_ arguments: Arguments, to writer: inout JSONWriter)
    /// Reads the request's fields.
    /// - Throws: `ProtocolError` with the code a client sees (`missing_field`, `wrong_type`, ...).
    static func decode(_ request: JSONObject) throws(ProtocolError) -> Arguments

    /// Writes the answer's fields, each preceded by a comma, after `"ok":true` and `rid`.
    static func encode(answer: Answer, to writer: inout JSONWriter)
    /// Reads the answer's fields.
    static func decode(answer: JSONObject) throws(ProtocolError) -> Answer
}

extension WireOperation {
    /// The whole request line, without its newline.
    public static func requestLine(_ arguments: Arguments, rid: JSONValue? = nil) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"op\":")
        writer.string(name)
        if let rid {
            writer.field("rid")
            writer.value(rid)
        }
        encode(arguments, to: &writer)
        writer.raw(UInt8(ascii: "}"))
        return writer.bytes
    }

    /// The whole success line, with its newline.
    public static func answerLine(_ answer: Answer, rid: JSONValue?) -> [UInt8] {
        Response.success(rid: rid) { encode(answer: answer, to: &$0) }
    }
}

/// An operation whose request carries no fields besides `op` and `rid` (`ping`, `hello`,
/// `stats`): one codec for all of them.
extension WireOperation where Arguments == Nothing {
    public static var requestFields: [FieldSpec] { [] }
    public static var fields: Set<String> { [] }
    public static func encode(_ arguments: Nothing, to writer: inout JSONWriter) {}
    public static func decode(_ request: JSONObject) throws(ProtocolError) -> Nothing {
        try request.requireKnownFields(fields)
        return Nothing()
    }
}

/// The arguments or answer of an operation that carries none.
public struct Nothing: Sendable, Equatable {
    public init() {}
}
