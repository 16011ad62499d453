#if canImport(Glibc)
    import Glibc
#endif

/// Reads a text file line by line without loading it whole (import files run to gigabytes).
public final class LineReader {
    private let file: UnsafeMutablePointer<FILE>
    private var buffer: UnsafeMutablePointer<CChar>?
    private var capacity = 0
    /// The 1-based number of the line last returned.
    public private(set) var lineNumber = 0
    /// The file's size in bytes, when it was opened.
    public let size: Int

    public init(path: String) throws {
        guard let file = fopen(path, "r") else { throw DataFileError("cannot open \(path)") }
        self.file = file
        var info = stat()
        size = fstat(fileno(file), &info) == 0 ? Int(info.st_size) : 0
    }

    /// How much of the file has been read, from 0 to 1.
    public var fractionRead: Double {
        size > 0 ? min(1, Double(ftell(file)) / Double(size)) : 1
    }

    deinit {
        free(buffer)
        fclose(file)
    }

    /// The next line without its line ending, or nil at the end of the file.
    public func next() -> String? {
        let length = getline(&buffer, &capacity, file)
        guard length >= 0, let buffer else { return nil }
        lineNumber += 1
        var count = length
        while count > 0, buffer[count - 1] == 0x0A || buffer[count - 1] == 0x0D { count -= 1 }
        return buffer.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }
}
