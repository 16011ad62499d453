import Foundation

/// Why a safetensors file could not be read.
public struct SafeTensorsError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Reads the safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the raw little-endian tensor bytes.
public struct SafeTensors: Sendable {
    /// One float32 tensor, copied out of the file into contiguous row-major storage.
    public struct Tensor: Sendable {
        public var shape: [Int]
        public var values: [Float]
    }

    public let tensors: [String: Tensor]

    /// Loads every float32 tensor of the file at `path` (other dtypes are skipped).
    public init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        guard data.count >= 8 else { throw SafeTensorsError(description: "\(path): shorter than a header") }
        let headerLength = data.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 0, 8 + headerLength <= data.count else {
            throw SafeTensorsError(description: "\(path): header length \(headerLength) is past the end of the file")
        }
        let header = data.subdata(in: 8..<8 + headerLength)
        guard let entries = try JSONSerialization.jsonObject(with: header) as? [String: Any] else {
            throw SafeTensorsError(description: "\(path): the header is not a JSON object")
        }
        let body = 8 + headerLength
        var tensors: [String: Tensor] = [:]
        for (name, value) in entries where name != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw SafeTensorsError(description: "\(path): malformed entry for \(name)") }
            guard dtype == "F32" else { continue }
            let count = shape.reduce(1, *)
            let start = body + offsets[0]
            let end = body + offsets[1]
            guard offsets[0] <= offsets[1], end <= data.count, end - start == count * 4 else {
                throw SafeTensorsError(description: "\(path): \(name) has a byte range that does not fit its shape")
            }
            let values = data.withUnsafeBytes { raw in
                [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    for i in 0..<count {
                        let bits = UInt32(
                            littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self))
                        buffer[i] = Float(bitPattern: bits)
                    }
                    initialized = count
                }
            }
            tensors[name] = Tensor(shape: shape, values: values)
        }
        self.tensors = tensors
    }

    /// The tensor called `name`, checked against the expected shape.
    public func tensor(_ name: String, shape: [Int]) throws -> [Float] {
        guard let tensor = tensors[name] else { throw SafeTensorsError(description: "missing tensor \(name)") }
        guard tensor.shape == shape else {
            throw SafeTensorsError(description: "tensor \(name) has shape \(tensor.shape), expected \(shape)")
        }
        return tensor.values
    }
}
