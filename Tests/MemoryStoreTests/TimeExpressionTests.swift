import ContextModel
import Foundation
import Testing

/// The parser of time in questions, read at Sunday 6 December 2026, 15:30 UTC.
@Suite struct TimeExpressionTests {
    static let now = ISO8601.milliseconds("2026-12-06T15:30:00Z")!

    /// The span `text` names, as ISO dates (the last day inside it), and its phrase.
    func span(_ text: String) -> String? {
        guard let window = TimeExpression.find(in: text, now: Self.now) else { return nil }
        func date(_ ms: Int64) -> String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withFullDate]
            return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
        }
        return "\(date(window.from))..\(date(window.to - 1)) '\(window.phrase)'\(window.relative ? "" : " fixed")"
    }

    @Test func daysWeeksMonthsAndYears() {
        let expected: [(String, String?)] = [
            ("What did I eat today?", "2026-12-06..2026-12-06 'today'"),
            ("Who called me yesterday?", "2026-12-05..2026-12-05 'yesterday'"),
            ("What happened last week?", "2026-11-23..2026-11-29 'last week'"),
            ("Plans for this week", "2026-11-30..2026-12-06 'this week'"),
            ("What did we do last weekend", "2026-11-28..2026-11-29 'last weekend'"),
            ("my goals from last month", "2026-11-01..2026-11-30 'last month'"),
            ("Where did I travel last year?", "2025-01-01..2025-12-31 'last year'"),
            ("this year", "2026-01-01..2026-12-31 'this year'"),
            ("the past two weeks", "2026-11-23..2026-12-06 'past two weeks'"),
            ("three days ago", "2026-12-03..2026-12-03 'three days ago'"),
            ("a month ago", "2026-11-01..2026-11-30 'a month ago'"),
            ("two years ago", "2024-01-01..2024-12-31 'two years ago'"),
            ("last Monday", "2026-11-30..2026-11-30 'last monday'"),
            ("last Sunday", "2026-11-29..2026-11-29 'last sunday'"),
            ("What did Caroline do in May 2023?", "2023-05-01..2023-05-31 'may 2023' fixed"),
            ("on 8 May 2023", "2023-05-08..2023-05-08 '8 may 2023' fixed"),
            ("on May 8th, 2023", "2023-05-08..2023-05-08 'may 8 2023' fixed"),
            ("in May", "2026-05-01..2026-05-31 'may'"),
            ("in December", "2026-12-01..2026-12-31 'december'"),
            ("during the summer of 2022", "2022-01-01..2022-12-31 '2022' fixed"),
            ("on 29 February 2024", "2024-02-29..2024-02-29 '29 february 2024' fixed"),
            // No such day: the month it names.
            ("on 31 February 2023", "2023-02-01..2023-02-28 'february 2023' fixed"),
        ]
        for (text, span) in expected { #expect(self.span(text) == span, "\(text)") }
    }

    @Test func wordsThatNameNoTime() {
        for text in [
            "May I ask what you think?", "I have 2000 dollars", "What is my name?", "", "last", "this is it",
            "in 12345",
        ] {
            #expect(span(text) == nil, "\(text)")
        }
    }

    /// At the ends of the times a request may give, the largest counts it reads, and a query of
    /// a megabyte: an answer or none, never a trap.
    @Test func theEdgesOfTimeAndText() {
        for now in [TimeRange.milliseconds.lowerBound, TimeRange.milliseconds.upperBound] {
            for text in [
                "1000 years ago", "the past 1000 years", "last year", "this year", "in 9999", "in 1000",
                "on 31 December 9999", "1 January 1000", "yesterday", "last monday", "in May",
            ] {
                if let window = TimeExpression.find(in: text, now: now) {
                    #expect(window.from < window.to, "\(text) at \(now)")
                }
            }
        }
        #expect(TimeExpression.find(in: "99999999999999999999 days ago", now: Self.now) == nil)
        // Only the start of a long query is read.
        let megabyte = String(repeating: "what did we say about tea ", count: 40_000)
        #expect(TimeExpression.find(in: "last week " + megabyte, now: Self.now)?.phrase == "last week")
        #expect(TimeExpression.find(in: megabyte + "last week", now: Self.now) == nil)
    }
}
