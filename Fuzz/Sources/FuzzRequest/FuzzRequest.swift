import ContextProtocol
import ContextServer
import PromptBuilder

/// One request line, as the server decodes it: parsing and validation must never trap, and a
/// parsed value must survive a round trip through the writer unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let value = try? JSONParser.parse(bytes) else { return 0 }
    if value.isFinite {
        let written = JSONWriter.serialize(value)
        guard let again = try? JSONParser.parse(written), again.sameNumbers(as: value) else {
            fatalError("round trip changed \(value) into \(written)")
        }
    }
    if case .object(let object) = value {
        try? ContextStoreServer.check(request: object)
        // A template a request carries: scanned and parsed, never trapping.
        if case .string(let template) = object["template"] { _ = try? PromptTemplate(name: "fuzz", text: template) }
    }
    return 0
}

extension JSONValue {
    /// Equality, except that a Double the writer prints as an integer reads back as `.integer`.
    func sameNumbers(as other: JSONValue) -> Bool {
        switch (self, other) {
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.sameNumbers(as: $1) }
        case (.object(let a), .object(let b)):
            return a.fields.count == b.fields.count
                && zip(a.fields, b.fields).allSatisfy { $0.key == $1.key && $0.value.sameNumbers(as: $1.value) }
        case (.number, _), (.integer, _):
            return numberValue == other.numberValue
        default:
            return self == other
        }
    }
}

/// SwiftPM links an executable target with `main` renamed to `FuzzRequest_main`; it hands over to
/// libFuzzer's driver.
@_cdecl("FuzzRequest_main")
func fuzzRequestMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var (count, arguments) = (argc, argv)
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzRequest)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32
