import CKernels
import ContextModel

/// Which build of the distance kernels scores codes.
public enum KernelForm: Sendable, Equatable {
    /// The fastest this processor runs (AVX2 + FMA + F16C where it has them).
    case best
    /// The portable C kernels, whatever the processor: for tests of both forms on one machine.
    case baseline
}

/// A graph's vectors: one fixed-size code per slot (float32, float16 or int8, see
/// `VectorStorage`) in one contiguous array, and the kernel that scores a float32 query against
/// a code. Scores are "higher is closer": the inner product, or `-|q - x|^2` for l2.
struct VectorCodes: Sendable {
    let dimension: Int
    let storage: VectorStorage
    let metric: Metric
    /// The kernel for this metric and storage.
    let kernel: ck_code_kernel
    /// Bytes per stored vector.
    let codeBytes: Int
    private var codes: [UInt8] = []

    init(dimension: Int, metric: Metric, storage: VectorStorage, kernels: KernelForm) {
        self.dimension = dimension
        self.metric = metric
        self.storage = storage
        kernel = ck_select_code_kernel(storage.format, metric == .l2 ? 1 : 0, kernels == .baseline ? 1 : 0)
        codeBytes = ck_code_bytes(storage.format, dimension)
    }

    /// Slots with a code (or room for one).
    var count: Int { codes.count / codeBytes }

    /// Bytes held.
    var memoryBytes: Int { codes.capacity }

    mutating func reserveCapacity(_ slots: Int) { codes.reserveCapacity(slots * codeBytes) }

    /// Stores `vector`'s code in `slot`, growing the table to hold it.
    /// - Precondition: `vector` is in the metric's prepared form (`Metric.prepared`).
    mutating func set(_ slot: Int32, to vector: [Float]) {
        let i = Int(slot)
        precondition(i >= 0 && vector.count == dimension)
        if i >= count { codes.append(contentsOf: repeatElement(0, count: (i + 1 - count) * codeBytes)) }
        let (storage, codeBytes) = (self.storage, self.codeBytes)
        codes.withUnsafeMutableBytes { raw in
            Self.encode(
                vector, as: storage,
                into: UnsafeMutableRawBufferPointer(rebasing: raw[i * codeBytes..<(i + 1) * codeBytes]))
        }
    }

    /// Higher is closer, between a float32 query and a stored code.
    @inline(__always)
    func score(_ query: UnsafePointer<Float>, _ code: UnsafeRawPointer) -> Float {
        let value = kernel(query, code, dimension)
        return metric == .l2 ? -value : value
    }

    /// Runs `body` with the base of the codes: `code(base, slot)` then addresses a slot's code.
    @inline(__always)
    func withCodes<T>(_ body: (UnsafeRawPointer) -> T) -> T {
        codes.withUnsafeBytes { body($0.baseAddress!) }
    }

    @inline(__always)
    func code(_ base: UnsafeRawPointer, _ slot: Int32) -> UnsafeRawPointer { base + Int(slot) * codeBytes }

    /// Runs `body` with the float32 vector of `slot`: the code itself for float32 storage, a
    /// decoded copy otherwise.
    @inline(__always)
    func withVector<T>(_ slot: Int32, _ body: (UnsafePointer<Float>) -> T) -> T {
        if storage == .float32 {
            return withCodes { body(code($0, slot).assumingMemoryBound(to: Float.self)) }
        }
        return decode(slot).withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// The float32 vector `slot`'s code stands for.
    func decode(_ slot: Int32) -> [Float] {
        codes.withUnsafeBytes { codes in
            let code = UnsafeRawBufferPointer(rebasing: codes[Int(slot) * codeBytes..<(Int(slot) + 1) * codeBytes])
            switch storage {
            case .float32:
                return (0..<dimension).map { code.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case .float16:
                return [Float](unsafeUninitializedCapacity: dimension) { out, initialized in
                    ck_decode_f16(code.baseAddress!, out.baseAddress!, dimension)
                    initialized = dimension
                }
            case .int8:
                let scale = code.loadUnaligned(as: Float.self)
                return (0..<dimension).map { scale * Float(code.load(fromByteOffset: 4 + $0, as: Int8.self)) }
            }
        }
    }

    /// Writes `vector` in this storage, with the flat index's encoders (`ck_encode_f16`,
    /// `ck_encode_i8`). Total for every finite vector: float16 components beyond its range are
    /// clamped to its largest finite value, and int8 codes are computed in double precision, so a
    /// subnormal vector cannot divide by a scale that underflowed to zero (a zero vector keeps the
    /// scale 1). The walk's order is approximate anyway; candidates are re-ranked with the exact
    /// vectors.
    private static func encode(_ vector: [Float], as storage: VectorStorage, into raw: UnsafeMutableRawBufferPointer) {
        vector.withUnsafeBufferPointer { vector in
            switch storage {
            case .float32:
                raw.copyMemory(from: UnsafeRawBufferPointer(vector))
            case .float16:
                raw.withMemoryRebound(to: UInt16.self) {
                    ck_encode_f16(vector.baseAddress!, vector.count, $0.baseAddress!)
                }
            case .int8:
                let scale = UnsafeMutableRawBufferPointer(rebasing: raw[4...]).withMemoryRebound(to: Int8.self) {
                    ck_encode_i8(vector.baseAddress!, vector.count, $0.baseAddress!)
                }
                raw.storeBytes(of: scale > 0 ? scale : 1, as: Float.self)
            }
        }
    }
}
