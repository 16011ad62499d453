import ContextTools

#if canImport(Glibc)
    import Glibc
#endif

/// The path each input is written to: the import readers read files, as `import` does.
let scratchPath: String = {
    var template = Array("/tmp/contextstore-fuzz-XXXXXX".utf8CString)
    let descriptor = mkstemp(&template)
    close(descriptor)
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}()

/// An import file: the first byte picks the format (jsonl, csv, npy, fvecs), the rest is the
/// file. Reading every row must never trap, whatever the file holds.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImport(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let formats: [ImportFormat] = [.jsonl, .csv, .npy, .fvecs]
    let format = formats[Int(data[0]) % formats.count]
    let extensions = ["jsonl", "csv", "npy", "fvecs"]
    let path = scratchPath + "." + extensions[Int(data[0]) % formats.count]
    guard let file = fopen(path, "w") else { return 0 }
    fwrite(data + 1, 1, size - 1, file)
    fclose(file)
    defer { unlink(path) }
    guard let source = try? ImportSource(path: path, format: format, defaultUser: "fuzz") else { return 0 }
    var rows = 0
    while source.nextRow() != nil, rows < 100_000 { rows += 1 }
    return 0
}

/// SwiftPM links an executable target with `main` renamed to `FuzzImport_main`; it hands over to
/// libFuzzer's driver.
@_cdecl("FuzzImport_main")
func fuzzImportMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var (count, arguments) = (argc, argv)
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzImport)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32
