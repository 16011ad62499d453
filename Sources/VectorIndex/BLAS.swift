import CBLAS

#if canImport(Glibc)
    import Glibc
#endif

/// Thin, checked wrappers over the CBLAS calls the kernels use, plus a description of the BLAS
/// library the process opened (CBLAS/blas.c: `libblas.so.3`, Debian's choice of BLAS).
public enum BLAS {
    /// `y[i] = dot(a[i], x)` for each of `rows` rows of `a` (row-major, `columns` wide).
    @inlinable
    public static func matrixVector(
        _ a: UnsafePointer<Float>, rows: Int, columns: Int,
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>
    ) {
        guard rows > 0 else { return }
        contextstore_sgemv(
            Int32(rows), Int32(columns), 1, a, Int32(columns), x, 0, y)
    }

    /// `c[q * resultStride + i] = dot(queries[q], a[i])`: `queryCount` rows of scores.
    @inlinable
    public static func matrixMatrixTransposed(
        _ a: UnsafePointer<Float>, rows: Int, columns: Int,
        queries: UnsafePointer<Float>, queryCount: Int, into c: UnsafeMutablePointer<Float>, resultStride: Int
    ) {
        guard rows > 0, queryCount > 0 else { return }
        contextstore_sgemm(
            0, 1, Int32(queryCount), Int32(rows), Int32(columns),
            1, queries, Int32(columns), a, Int32(columns), 0, c, Int32(resultStride))
    }

    /// The BLAS library this process opened (CBLAS/blas.c), e.g.
    /// `OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64
    /// (/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3)`: OpenBLAS names the kernels it chose.
    public static let loadedLibrary: String = {
        let resolved = realpath(contextstore_blas_path(), nil)
        let path = resolved.map { String(cString: $0) } ?? String(cString: contextstore_blas_path())
        free(resolved)
        // OpenBLAS identifies itself; the reference BLAS has no such call.
        guard let config = contextstore_blas_config() else { return "reference BLAS (\(path))" }
        return "\(String(cString: config)) (\(path))"
    }()
}
