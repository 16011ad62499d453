/// A span of time a question names ("last week", "in May 2023", "two years ago"), in UTC.
public struct TimeWindow: Sendable, Equatable {
    /// The first moment in it (unix milliseconds).
    public var from: Int64
    /// The first moment after it.
    public var to: Int64
    /// The words that named it, as the question wrote them (lower case).
    public var phrase: String
    /// Whether it was read relative to the read's `now` ("yesterday", "in May" without a year):
    /// the same words name another span at another time.
    public var relative: Bool

    public init(from: Int64, to: Int64, phrase: String, relative: Bool) {
        self.from = from
        self.to = to
        self.phrase = phrase
        self.relative = relative
    }

    public func contains(_ time: Int64) -> Bool { time >= from && time < to }
}

/// Finds the first span of time an English question names, without a model: days ("today",
/// "yesterday", "8 May 2023", "May 8, 2023", "last Monday"), weeks, months and years ("last
/// week", "this month", "in May 2023", "in 2022"), spans back from now ("the past two weeks",
/// "three days ago"). Weeks begin on Monday; months and years are calendar ones, in UTC. Words it
/// does not know name nothing: a question without a time gets nil.
public enum TimeExpression {
    static let day: Int64 = 86_400_000

    static let months = [
        "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
        "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
        "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
    ]
    static let weekdays = [
        "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
    ]
    static let numbers = [
        "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
        "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2, "few": 3,
    ]
    /// Words before a month name that make it a month ("may" is also a verb).
    static let monthLeads: Set<String> = [
        "in", "during", "on", "since", "of", "early", "mid", "late", "last", "this", "until", "before", "after", "by",
    ]

    enum Unit: String {
        case day, week, weekend, month, year

        init?(word: String) {
            let singular = word.hasSuffix("s") ? String(word.dropLast()) : word
            self.init(rawValue: singular)
        }
    }

    /// The most bytes of a query read for a time: a question names its time early, and a query
    /// of a megabyte costs no more than one of a page.
    public static let maximumScannedBytes = 4096

    /// The first span the first `maximumScannedBytes` of `text` name, read at `now` (unix
    /// milliseconds); nil when they name none.
    public static func find(in text: String, now: Int64) -> TimeWindow? {
        let words = self.words(String(decoding: text.utf8.prefix(maximumScannedBytes), as: UTF8.self))
        let today = floorDiv(now, day)
        for i in words.indices {
            if let window = match(words, at: i, today: today) { return window }
        }
        return nil
    }

    /// Lower-case words and numbers, in order (an ordinal's suffix dropped: "8th" is 8).
    static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                current.unicodeScalars.append(scalar)
            } else if !current.isEmpty {
                words.append(current.lowercased())
                current = ""
            }
        }
        if !current.isEmpty { words.append(current.lowercased()) }
        return words.map { word in
            for suffix in ["st", "nd", "rd", "th"] where word.hasSuffix(suffix) {
                let digits = word.dropLast(2)
                if !digits.isEmpty, digits.allSatisfy(\.isNumber) { return String(digits) }
            }
            return word
        }
    }

    private static func match(_ words: [String], at i: Int, today: Int64) -> TimeWindow? {
        let word = words[i]
        func next(_ k: Int) -> String? { i + k < words.count ? words[i + k] : nil }
        func window(_ fromDay: Int64, _ toDay: Int64, _ count: Int, relative: Bool = true) -> TimeWindow {
            TimeWindow(
                from: fromDay * day, to: toDay * day,
                phrase: words[i..<min(words.count, i + count)].joined(separator: " "),
                relative: relative)
        }
        switch word {
        case "today", "tonight": return window(today, today + 1, 1)
        case "yesterday": return window(today - 1, today, 1)
        case "last", "past", "previous", "this":
            guard let following = next(1) else { return nil }
            if let weekday = weekdays[following], word != "this" {
                // The latest such day before today.
                let back = (weekdayOf(today) - weekday + 6) % 7 + 1
                return window(today - Int64(back), today - Int64(back) + 1, 2)
            }
            if let unit = Unit(rawValue: following) {
                let (start, end) = calendarUnit(unit, containing: today)
                guard word != "this" else { return window(start, end, 2) }
                if unit == .day { return window(today - 1, today, 2) }
                if unit == .week || unit == .weekend { return window(start - 7, end - 7, 2) }
                let (previous, _) = calendarUnit(unit, containing: start - 1)
                return window(previous, start, 2)
            }
            // "the past two weeks": back from now.
            if word != "this", let count = number(following), let unitWord = next(2), let unit = Unit(word: unitWord) {
                return window(today + 1 - Int64(count) * length(unit), today + 1, 3)
            }
            return nil
        default:
            break
        }
        // "three days ago", "a year ago".
        if let count = number(word), let unitWord = next(1), let unit = Unit(word: unitWord), next(2) == "ago" {
            let point = today - Int64(count) * length(unit)
            let (start, end) = unit == .day ? (point, point + 1) : calendarUnit(unit, containing: point)
            return window(start, end, 3)
        }
        // "May 8, 2023", "May 2023", "in May".
        if let month = months[word] {
            let led = i > 0 && monthLeads.contains(words[i - 1])
            let dayNumber = next(1).flatMap { Int($0) }.flatMap { (1...31).contains($0) ? $0 : nil }
            let yearAfter = { (k: Int) in next(k).flatMap { Int($0) }.flatMap { (1000...9999).contains($0) ? $0 : nil }
            }
            if let dayNumber, let year = yearAfter(2) {
                return date(year, month, dayNumber).map { window($0, $0 + 1, 3, relative: false) }
            }
            if let year = yearAfter(1) {
                return monthWindow(year, month).map { window($0.0, $0.1, 2, relative: false) }
            }
            guard led else { return nil }
            if let dayNumber {
                let year = latestYear(month: month, day: dayNumber, today: today)
                return date(year, month, dayNumber).map { window($0, $0 + 1, 2) }
            }
            let year = latestYear(month: month, day: 1, today: today)
            return monthWindow(year, month).map { window($0.0, $0.1, 1) }
        }
        // "8 May 2023", "8 May".
        if let dayNumber = Int(word), (1...31).contains(dayNumber), let monthWord = next(1),
            let month = months[monthWord]
        {
            if let year = next(2).flatMap({ Int($0) }), (1000...9999).contains(year) {
                return date(year, month, dayNumber).map { window($0, $0 + 1, 3, relative: false) }
            }
            let year = latestYear(month: month, day: dayNumber, today: today)
            return date(year, month, dayNumber).map { window($0, $0 + 1, 2) }
        }
        // "in 2022": a year after a word that makes it one (not "2000 dollars").
        if let year = Int(word), (1000...9999).contains(year), i > 0,
            ["in", "during", "of", "since"].contains(words[i - 1])
        {
            let start = Int64(ISO8601.daysFromCivil(year: year, month: 1, day: 1))
            return window(start, Int64(ISO8601.daysFromCivil(year: year + 1, month: 1, day: 1)), 1, relative: false)
        }
        return nil
    }

    private static func number(_ word: String) -> Int? {
        if let value = Int(word), (1...1000).contains(value) { return value }
        return numbers[word]
    }

    private static func length(_ unit: Unit) -> Int64 {
        switch unit {
        case .day: 1
        case .week, .weekend: 7
        case .month: 30
        case .year: 365
        }
    }

    /// Monday 0 ... Sunday 6 of a day counted from 1970-01-01 (a Thursday).
    static func weekdayOf(_ day: Int64) -> Int { Int(((day % 7) + 7 + 3) % 7) }

    /// The calendar week (from Monday), weekend, month or year holding `day`, as days.
    private static func calendarUnit(_ unit: Unit, containing day: Int64) -> (Int64, Int64) {
        switch unit {
        case .day: return (day, day + 1)
        case .week:
            let start = day - Int64(weekdayOf(day))
            return (start, start + 7)
        case .weekend:
            let saturday = day - Int64(weekdayOf(day)) + 5
            return (saturday, saturday + 2)
        case .month, .year:
            let (year, month) = civil(day)
            if unit == .year {
                return (
                    Int64(ISO8601.daysFromCivil(year: year, month: 1, day: 1)),
                    Int64(ISO8601.daysFromCivil(year: year + 1, month: 1, day: 1))
                )
            }
            return monthWindow(year, month) ?? (day, day + 1)
        }
    }

    /// The year and month of a day counted from 1970-01-01.
    static func civil(_ day: Int64) -> (year: Int, month: Int) {
        // Howard Hinnant's civil_from_days.
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153
        let month = Int(shifted < 10 ? shifted + 3 : shifted - 9)
        return (Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0), month)
    }

    private static func date(_ year: Int, _ month: Int, _ dayNumber: Int) -> Int64? {
        guard dayNumber <= ISO8601.daysIn(month: month, year: year) else { return nil }
        return Int64(ISO8601.daysFromCivil(year: year, month: month, day: dayNumber))
    }

    private static func monthWindow(_ year: Int, _ month: Int) -> (Int64, Int64)? {
        let start = Int64(ISO8601.daysFromCivil(year: year, month: month, day: 1))
        return (start, start + Int64(ISO8601.daysIn(month: month, year: year)))
    }

    /// The year of the latest such date on or before `today` (a question about "May" asks of
    /// the May that has been).
    private static func latestYear(month: Int, day dayNumber: Int, today: Int64) -> Int {
        let (year, thisMonth) = civil(today)
        let todayNumber = Int(today - Int64(ISO8601.daysFromCivil(year: year, month: thisMonth, day: 1))) + 1
        return (month, dayNumber) <= (thisMonth, todayNumber) ? year : year - 1
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}
