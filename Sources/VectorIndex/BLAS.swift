import CBLAS

#if canImport(Glibc)
    import Glibc
#endif

/// Thin, checked wrappers over the CBLAS calls the kernels use, plus a description of the BLAS
/// library the process actually loaded (Debian picks it at run time through `libblas.so.3`).
public enum BLAS {
    /// `y[i] = dot(a[i], x)` for each of `rows` rows of `a` (row-major, `columns` wide).
    @inlinable
    public static func matrixVector(
        _ a: UnsafePointer<Float>, rows: Int, columns: Int,
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>
    ) {
        guard rows > 0 else { return }
        cblas_sgemv(
            CblasRowMajor, CblasNoTrans, Int32(rows), Int32(columns),
            1, a, Int32(columns), x, 1, 0, y, 1)
    }

    /// `c[q * resultStride + i] = dot(queries[q], a[i])`: `queryCount` rows of scores.
    @inlinable
    public static func matrixMatrixTransposed(
        _ a: UnsafePointer<Float>, rows: Int, columns: Int,
        queries: UnsafePointer<Float>, queryCount: Int, into c: UnsafeMutablePointer<Float>, resultStride: Int
    ) {
        guard rows > 0, queryCount > 0 else { return }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(queryCount), Int32(rows), Int32(columns),
            1, queries, Int32(columns), a, Int32(columns), 0, c, Int32(resultStride))
    }

    /// Makes every BLAS call run on its calling thread.
    ///
    /// OpenBLAS would otherwise split each call over its own worker threads, which spin while
    /// idle. Under a server's concurrent searches those workers and the event loops fight for the
    /// same cores (measured: search throughput halved at 4 connections). The flat index splits
    /// large scans over cores itself instead. Evaluated once, on first use.
    public static let callingThreadOnly: Void = contextstore_blas_use_calling_thread_only()

    /// The BLAS library behind `cblas_sgemv` in this process, e.g.
    /// `OpenBLAS 0.3.21 (/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3)`.
    public static let loadedLibrary: String = {
        var path = "unknown library"
        if let name = contextstore_blas_library_path() {
            let resolved = realpath(name, nil)
            path = String(cString: resolved ?? UnsafeMutablePointer(mutating: name))
            free(resolved)
        }
        // OpenBLAS identifies itself; the reference BLAS has no such call.
        if let config = contextstore_openblas_config() {
            return "\(String(cString: config)) (\(path))"
        }
        return "reference BLAS (\(path))"
    }()
}
