import CKernels
import Foundation

/// The processor this process runs on, and the kernels it chose for it: speed depends on both
/// (the same build differs by model and instruction set), so `hello` answers them and every
/// benchmark prints them next to its figures.
public enum Processor {
    /// The processor's model name as `/proc/cpuinfo` gives it, or "unknown".
    public static let model: String = {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return "unknown"
    }()

    /// The instruction set of the distance kernels in use ("avx2+fma+f16c" or "baseline"), and
    /// the form of the flat index's int8 scan that a measurement chose (`ck_i8_rows_chosen`):
    /// "avx2+fma+f16c, int8 avx512-vnni".
    public static let kernels: String =
        String(cString: ck_kernel_isa()) + ", int8 " + String(cString: ck_i8_rows_name(ck_i8_rows_chosen()))
}
