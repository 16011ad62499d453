import Foundation

/// Why a data file could not be read.
public struct DataFileError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A matrix read from `.npy` (float32, float16 or int32, C order, 2-D), `.fvecs` or `.ivecs`
/// (each row an int32 dimension then that many float32 or int32), memory-mapped and decoded
/// per row.
public struct VectorFile: Sendable {
    public let rows: Int
    public let dimension: Int
    private let data: Data
    private let offset: Int
    private let stride: Int
    private let half: Bool
    /// int32 elements (a ground-truth file): `row` converts them to float32 values.
    private let integers: Bool

    /// Opens `path`; the format comes from its extension (`.npy` or `.fvecs`).
    public init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        self.data = data
        if path.hasSuffix(".fvecs") || path.hasSuffix(".ivecs") {
            guard data.count >= 4 else { throw DataFileError("\(path): empty fvecs file") }
            let dimension = Int(data.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) })
            guard dimension > 0, data.count % (4 + 4 * dimension) == 0 else {
                throw DataFileError("\(path): not an fvecs file of dimension \(dimension)")
            }
            self.dimension = dimension
            rows = data.count / (4 + 4 * dimension)
            offset = 4
            stride = 4 + 4 * dimension
            half = false
            integers = path.hasSuffix(".ivecs")
        } else {
            // NPY: magic, version, header length, then a Python dict literal.
            guard data.count > 10, data.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else {
                throw DataFileError("\(path): not an .npy file")
            }
            let major = data[data.startIndex + 6]
            let headerStart = major == 1 ? 10 : 12
            guard data.count >= headerStart else { throw DataFileError("\(path): truncated .npy header") }
            let headerLength =
                major == 1
                ? Int(data[data.startIndex + 8]) | Int(data[data.startIndex + 9]) << 8
                : data.withUnsafeBytes {
                    Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
                }
            guard headerStart + headerLength <= data.count,
                let header = String(data: data.subdata(in: headerStart..<headerStart + headerLength), encoding: .ascii)
            else { throw DataFileError("\(path): truncated .npy header") }
            if header.contains("'<f4'") || header.contains("'<i4'") {
                half = false
                integers = header.contains("'<i4'")
            } else if header.contains("'<f2'") {
                half = true
                integers = false
            } else {
                throw DataFileError(
                    "\(path): only little-endian float32, float16 or int32 .npy files are read (\(header))")
            }
            guard header.contains("'fortran_order': False") else {
                throw DataFileError("\(path): Fortran order is not supported")
            }
            guard let key = header.range(of: "'shape':"),
                let open = header[key.upperBound...].firstIndex(of: "("),
                let close = header[open...].firstIndex(of: ")")
            else {
                throw DataFileError("\(path): no shape in the .npy header")
            }
            let shape = header[header.index(after: open)..<close].split(separator: ",").compactMap {
                Int($0.trimmingCharacters(in: .whitespaces))
            }
            guard shape.count == 2 else { throw DataFileError("\(path): a 2-D array is expected, not shape \(shape)") }
            guard shape[0] >= 0, shape[1] > 0 else {
                throw DataFileError("\(path): shape (\(shape[0]), \(shape[1])) has a negative or empty side")
            }
            rows = shape[0]
            dimension = shape[1]
            offset = headerStart + headerLength
            // The shape is untrusted: sizes are multiplied with overflow checks.
            let (rowBytes, overflow1) = dimension.multipliedReportingOverflow(by: half ? 2 : 4)
            let (totalBytes, overflow2) = rows.multipliedReportingOverflow(by: rowBytes)
            guard !overflow1, !overflow2, totalBytes <= data.count - offset else {
                throw DataFileError("\(path): shorter than its shape (\(rows), \(dimension))")
            }
            stride = rowBytes
        }
    }

    /// Every float16 bit pattern as float32: a lookup is faster than the software conversion
    /// x86-64 code gets without F16C.
    private static let halfToFloat: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    /// Row `index` of an int32 file (ground truth), as integers.
    public func integerRow(_ index: Int) -> [Int] {
        let start = offset + index * stride
        return data.withUnsafeBytes { raw in
            (0..<dimension).map { j in
                Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * j, as: Int32.self)))
            }
        }
    }

    /// Row `index`, as float32.
    public func row(_ index: Int) -> [Float] {
        let start = offset + index * stride
        return data.withUnsafeBytes { raw in
            if half {
                return Self.halfToFloat.withUnsafeBufferPointer { table in
                    (0..<dimension).map { j in
                        table[
                            Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: start + 2 * j, as: UInt16.self)))
                        ]
                    }
                }
            }
            return (0..<dimension).map { j in
                let bits = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * j, as: UInt32.self))
                return integers ? Float(Int32(bitPattern: bits)) : Float(bitPattern: bits)
            }
        }
    }
}
