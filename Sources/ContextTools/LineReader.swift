#if canImport(Glibc)
    import Glibc
#endif

/// Reads a text file line by line without loading it whole (import files run to gigabytes).
///
/// A line must be at most `maximumLineBytes` long (a byte-order mark at the start of the file
/// is skipped). A line that is not valid UTF-8 is returned empty with `lastLineInvalid` set, so
/// the reader reports it by its number and goes on. A read error is never taken for the end of
/// the file: `next` then returns nil and `failure` says what happened, with the line it
/// happened on.
public final class LineReader {
    private let descriptor: Int32
    private var chunk = [UInt8](repeating: 0, count: 1 << 20)
    private var chunkStart = 0
    private var chunkEnd = 0
    private var bytesRead = 0
    private var atEnd = false
    /// The 1-based number of the line last returned.
    public private(set) var lineNumber = 0
    /// The file's size in bytes, when it was opened (0 for pipes and devices).
    public let size: Int
    public let maximumLineBytes: Int
    /// Why reading stopped before the end of the file, if it did.
    public private(set) var failure: DataFileError?
    /// The line last returned was not valid UTF-8 (and was returned empty).
    public private(set) var lastLineInvalid = false

    public init(path: String, maximumLineBytes: Int = 64 << 20) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DataFileError("cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR else {
            close(descriptor)
            throw DataFileError("\(path) is a directory, not a file")
        }
        size = (info.st_mode & S_IFMT) == S_IFREG ? Int(info.st_size) : 0
        self.maximumLineBytes = maximumLineBytes
    }

    deinit { close(descriptor) }

    /// How much of the file the lines returned so far span, from 0 to 1 (not what sits read
    /// ahead in the buffer, which for a small file is all of it).
    public var fractionRead: Double {
        size > 0 ? min(1, Double(bytesRead - (chunkEnd - chunkStart)) / Double(size)) : 1
    }

    /// The next line without its line ending; nil at the end of the file or once reading has
    /// failed (see `failure`).
    public func next() -> String? {
        guard failure == nil else { return nil }
        var line: [UInt8] = []
        while true {
            if let newline = chunk[chunkStart..<chunkEnd].firstIndex(of: 0x0A) {
                line.append(contentsOf: chunk[chunkStart..<newline])
                chunkStart = newline + 1
                return finish(line)
            }
            line.append(contentsOf: chunk[chunkStart..<chunkEnd])
            chunkStart = chunkEnd
            if line.count > maximumLineBytes {
                return fail("line \(lineNumber + 1) is longer than \(maximumLineBytes) bytes; stopping")
            }
            if atEnd { return line.isEmpty ? nil : finish(line) }
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return fail("reading line \(lineNumber + 1) failed: \(String(cString: strerror(errno)))")
            }
            chunkStart = 0
            chunkEnd = count
            bytesRead += count
            if count == 0 { atEnd = true }
        }
    }

    private func finish(_ bytes: [UInt8]) -> String? {
        var body = bytes[...]
        if lineNumber == 0, body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        if body.last == 0x0D { body = body.dropLast() }
        lineNumber += 1
        guard let text = String(validating: body, as: UTF8.self) else {
            lastLineInvalid = true
            return ""
        }
        lastLineInvalid = false
        return text
    }

    private func fail(_ reason: String) -> String? {
        failure = DataFileError(reason)
        return nil
    }
}
