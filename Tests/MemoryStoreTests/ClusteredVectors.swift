/// Deterministic clustered vectors, as sentence embeddings are: `centres` random centres (a
/// xorshift generator from `seed`, components in [-1, 1)), and vector i scattered around centre
/// i % `centres` by up to `spread` in each component.
func clusteredVectors(_ count: Int, dimension: Int, seed: UInt64, centres: Int, spread: Float) -> [[Float]] {
    var state = seed | 1
    func uniform() -> Float {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    let points = (0..<centres).map { _ in (0..<dimension).map { _ in uniform() } }
    return (0..<count).map { i in points[i % centres].map { $0 + spread * uniform() } }
}
