/// The vector arithmetic of the prompt builder (near-duplicates, diversity, the summary's
/// centrality), on embeddings of a few hundred components.
enum Vectors {
    /// `vector` scaled to length 1 (as it is when it has no length).
    static func unit(_ vector: [Float]) -> [Float] {
        guard !vector.isEmpty else { return vector }
        let norm = vector.withUnsafeBufferPointer { dot($0.baseAddress!, $0.baseAddress!, $0.count) }.squareRoot()
        return norm > 0 ? vector.map { $0 / norm } : vector
    }

    static func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in dot(a.baseAddress!, b.baseAddress!, a.count) }
        }
    }

    /// Sixteen lanes at a time: the compiler keeps a float sum in order, so it would not
    /// vectorize a plain loop.
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var sums = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let x = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self)
            let y = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self)
            sums += x * y
            i += 16
        }
        var sum = sums.sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }
}
