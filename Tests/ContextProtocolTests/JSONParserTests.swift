import Testing

@testable import ContextProtocol

@Suite struct JSONParserTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#" {"a": [1, -2.5e2, 0.125, true, false, null], "b": {"c": "d"}, "e": ""} "#)
        #expect(value == ["a": [1, -250.0, 0.125, true, false, nil], "b": ["c": "d"], "e": ""])
    }

    /// One reader kept the first of two equal keys, another the last: the same line was two
    /// requests. A key is repeated when its bytes are (two spellings of "é" are two keys).
    @Test func aKeyRepeatedInOneObjectIsRefused() throws {
        for text in [
            #"{"user":"alice","user":"bob"}"#, #"{"a":{"k":1,"k":2}}"#, #"[{"a":1,"b":2,"a":3}]"#,
            #"{"a":1,"a":2}"#,
        ] {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.parse(text) }
        }
        let many = "{" + (0..<40).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + #","k39":0}"#
        #expect(throws: JSONParseError.self) { try JSONParser.parse(many) }
        let distinct = "{" + (0..<40).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + "}"
        #expect(try JSONParser.parse(distinct).objectValue?.fields.count == 40)
        let spellings = try JSONParser.parse(#"{"caf\u00e9":1,"cafe\u0301":2}"#).objectValue
        #expect(spellings?["caf\u{E9}"] == 1)
        #expect(spellings?["cafe\u{301}"] == 2)
    }

    @Test func numbersMatchTheCorrectlyRoundedConversion() throws {
        var generator = SystemRandomNumberGenerator()
        var texts = [
            "0", "-0", "1", "-1", "0.5", "1e22", "1e23", "9007199254740993", "123456789012345678901",
            "0.1", "0.30000000000000004", "-0.012345678918063641", "4.9e-324", "1.7976931348623157e308",
            "2.2250738585072014e-308", "1E+2", "1e-7", "12.5e-3", "100000000000000000000000",
        ]
        for _ in 0..<2000 {
            let double =
                Double.random(in: -1...1, using: &generator)
                * Double(sign: .plus, exponent: Int.random(in: -40...40, using: &generator), significand: 1)
            texts.append(double.description)
            texts.append(Float(double).description)
        }
        for text in texts {
            let expected = try #require(Double(text))
            #expect(try JSONParser.parse(text).numberValue == expected, "\(text)")
        }
        guard case .number(let negativeZero) = try JSONParser.parse("-0.0") else { return }
        #expect(negativeZero.sign == .minus)
    }

    @Test func decodesEscapesAndUnicode() throws {
        #expect(try JSONParser.parse(#""a\"b\\c\/d\n\t\r\b\f""#) == .string("a\"b\\c/d\n\t\r\u{8}\u{c}"))
        #expect(try JSONParser.parse(#""\u00e9\u4e2d""#) == .string("é中"))
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONParser.parse("\"héllo 😀\"") == .string("héllo 😀"))
    }

    @Test func acceptsPythonsNonFiniteLiterals() throws {
        guard case .number(let nan) = try JSONParser.parse("NaN") else {
            Issue.record("not a number")
            return
        }
        #expect(nan.isNaN)
        #expect(try JSONParser.parse("[Infinity,-Infinity]") == [.number(.infinity), .number(-.infinity)])
    }

    @Test func integersStayExactAndOverflowIsAnError() throws {
        #expect(try JSONParser.parse("9007199254740993") == .integer(9_007_199_254_740_993))
        #expect(try JSONParser.parse("-9223372036854775808") == .integer(.min))
        #expect(try JSONParser.parse("9223372036854775807") == .integer(.max))
        #expect(try JSONParser.parse("9223372036854775808") == .number(9_223_372_036_854_775_808))
        #expect(try JSONParser.parse("1.0") == .number(1))
        #expect(try JSONParser.parse("-0") == .integer(0))
        #expect(JSONWriter.serialize(try JSONParser.parse(#"{"a":9007199254740993}"#)) == #"{"a":9007199254740993}"#)
        for text in ["1e999", "-1e400", "[1, 2e308]"] {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.parse(text) }
        }
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1", "tru",
        "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "[1 2]", "{} {}", "\"a\u{1}b\"",
    ])
    func rejectsMalformedInput(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0x5C, 0x6E, 0xC3, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x00, 0x01, 0x02]) }
    }

    @Test func capsNesting() throws {
        let ok =
            String(repeating: "[", count: JSONParser.maximumDepth)
            + String(repeating: "]", count: JSONParser.maximumDepth)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test func writerRoundTrips() throws {
        let value: JSONValue = [
            "s": "quote \" backslash \\ newline \n control \u{1} é", "n": [0, -1, 1.5, 1e-7, 12_345_678_901], "o": [:],
            "a": [],
        ]
        let text = JSONWriter.serialize(value)
        #expect(try JSONParser.parse(text) == value)
        #expect(JSONWriter.serialize(["x": [1, 2.5, true, nil]]) == #"{"x":[1,2.5,true,null]}"#)
    }

    @Test func writesFloatsShortestRoundTrip() {
        var writer = JSONWriter()
        writer.vector([0.1, -2, 1e-8, 3.4028235e38])
        let text = String(decoding: writer.bytes, as: UTF8.self)
        #expect(text == "[0.1,-2.0,1e-08,3.4028235e+38]")
    }
}
