extension CommandLog.Configuration {
    /// Reads a PostgreSQL URL in libpq's form, with every host of the formation:
    /// `postgres://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]...]/DATABASE[?sync=off]`.
    /// `sync=off` lets the log commit without a synchronous standby (one PostgreSQL, for
    /// development: then an acknowledged write rests on one disk).
    /// - Throws: `ClusterError.invalidConfiguration` naming what is wrong.
    public init(url: String) throws {
        func invalid(_ why: String) -> ClusterError {
            .invalidConfiguration("\(why) in the cluster URL (postgres://USER@HOST:PORT[,HOST:PORT...]/DATABASE)")
        }
        var rest = Substring(url)
        guard let scheme = ["postgres://", "postgresql://"].first(where: { rest.hasPrefix($0) }) else {
            throw invalid("no postgres:// scheme")
        }
        rest = rest.dropFirst(scheme.count)
        var options = Substring("")
        if let question = rest.firstIndex(of: "?") {
            options = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        guard let at = rest.lastIndex(of: "@") else { throw invalid("no USER@") }
        let credentials = rest[..<at]
        rest = rest[rest.index(after: at)...]
        guard let slash = rest.firstIndex(of: "/") else { throw invalid("no /DATABASE") }
        let database = String(rest[rest.index(after: slash)...])
        guard !database.isEmpty else { throw invalid("an empty database name") }
        var hosts: [(host: String, port: Int)] = []
        for part in rest[..<slash].split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(pieces.count), !pieces[0].isEmpty else { throw invalid("a host '\(part)'") }
            var port = 5432
            if pieces.count == 2 {
                guard let given = Int(pieces[1]), (1...65535).contains(given) else {
                    throw invalid("a port '\(pieces[1])'")
                }
                port = given
            }
            hosts.append((String(pieces[0]), port))
        }
        let user = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard !user[0].isEmpty else { throw invalid("an empty user") }
        var requireStandby = true
        for option in options.split(separator: "&") {
            switch option {
            case "sync=on": requireStandby = true
            case "sync=off": requireStandby = false
            default: throw invalid("an unknown option '\(option)' (sync=on|off)")
            }
        }
        self.init(
            hosts: hosts, username: String(user[0]), password: user.count == 2 ? String(user[1]) : nil,
            database: database, requireSynchronousStandby: requireStandby)
    }
}
