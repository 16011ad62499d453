import CBLAS
import CKernels
import Foundation

/// The shape of a BERT encoder, read from the model's `config.json`.
public struct BertConfiguration: Sendable, Equatable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var intermediateSize: Int
    public var maximumPositions: Int
    public var layerNormEpsilon: Float

    public init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SafeTensorsError(description: "\(path) is not a JSON object")
        }
        func int(_ key: String) throws -> Int {
            guard let value = json[key] as? Int else { throw SafeTensorsError(description: "\(path) lacks \(key)") }
            return value
        }
        vocabularySize = try int("vocab_size")
        hiddenSize = try int("hidden_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        intermediateSize = try int("intermediate_size")
        maximumPositions = try int("max_position_embeddings")
        layerNormEpsilon = Float(json["layer_norm_eps"] as? Double ?? 1e-12)
        guard (json["hidden_act"] as? String ?? "gelu") == "gelu", hiddenSize % headCount == 0 else {
            throw SafeTensorsError(description: "\(path): only BERT with erf GELU and whole heads is supported")
        }
    }
}

/// A BERT encoder's forward pass on BLAS: token ids in, one hidden vector per token out.
///
/// Sequences are packed without padding: the linear layers run once over every token of every
/// sequence (one `sgemm` each), and attention runs per sequence on its own tokens, so no work is
/// spent on padding and no mask is needed. Weights are read once and shared read-only.
public struct BertModel: Sendable {
    public let configuration: BertConfiguration

    private struct Linear: Sendable {
        var weight: [Float]  // [out, in], row-major, as PyTorch stores it
        /// The weights as float16 in blocks of 16 outputs (`ck_pack_f16`), for few rows.
        var packed: [UInt16]
        var bias: [Float]
        var inputs: Int
        var outputs: Int

        init(weight: [Float], bias: [Float], inputs: Int, outputs: Int) {
            self.weight = weight
            self.bias = bias
            self.inputs = inputs
            self.outputs = outputs
            packed = [UInt16](repeating: 0, count: ck_packed_f16_count(outputs, inputs))
            packed.withUnsafeMutableBufferPointer { ck_pack_f16(weight, outputs, inputs, $0.baseAddress) }
        }
    }

    private struct LayerNorm: Sendable {
        var gamma: [Float]
        var beta: [Float]
    }

    private struct Layer: Sendable {
        var query, key, value, attentionOutput, intermediate, output: Linear
        var attentionNorm, outputNorm: LayerNorm
    }

    private let wordEmbeddings: [Float]
    private let positionEmbeddings: [Float]
    private let tokenTypeEmbeddings: [Float]
    private let embeddingNorm: LayerNorm
    private let layers: [Layer]

    /// Loads `config.json` and `model.safetensors` from a model folder.
    public init(folder: String) throws {
        let configuration = try BertConfiguration(path: folder + "/config.json")
        let tensors = try SafeTensors(path: folder + "/model.safetensors")
        let hidden = configuration.hiddenSize
        func linear(_ name: String, inputs: Int, outputs: Int) throws -> Linear {
            Linear(
                weight: try tensors.tensor(name + ".weight", shape: [outputs, inputs]),
                bias: try tensors.tensor(name + ".bias", shape: [outputs]), inputs: inputs, outputs: outputs)
        }
        func norm(_ name: String) throws -> LayerNorm {
            LayerNorm(
                gamma: try tensors.tensor(name + ".weight", shape: [hidden]),
                beta: try tensors.tensor(name + ".bias", shape: [hidden]))
        }
        self.configuration = configuration
        wordEmbeddings = try tensors.tensor(
            "embeddings.word_embeddings.weight", shape: [configuration.vocabularySize, hidden])
        positionEmbeddings = try tensors.tensor(
            "embeddings.position_embeddings.weight", shape: [configuration.maximumPositions, hidden])
        tokenTypeEmbeddings = try tensors.tensor("embeddings.token_type_embeddings.weight", shape: [2, hidden])
        embeddingNorm = try norm("embeddings.LayerNorm")
        layers = try (0..<configuration.layerCount).map { index in
            let prefix = "encoder.layer.\(index)."
            return Layer(
                query: try linear(prefix + "attention.self.query", inputs: hidden, outputs: hidden),
                key: try linear(prefix + "attention.self.key", inputs: hidden, outputs: hidden),
                value: try linear(prefix + "attention.self.value", inputs: hidden, outputs: hidden),
                attentionOutput: try linear(prefix + "attention.output.dense", inputs: hidden, outputs: hidden),
                intermediate: try linear(
                    prefix + "intermediate.dense", inputs: hidden, outputs: configuration.intermediateSize),
                output: try linear(prefix + "output.dense", inputs: configuration.intermediateSize, outputs: hidden),
                attentionNorm: try norm(prefix + "attention.output.LayerNorm"),
                outputNorm: try norm(prefix + "output.LayerNorm"))
        }
    }

    /// The last hidden state of every token: `sequences` packed one after another, each row
    /// `hiddenSize` wide. Every id must be below the vocabulary size, and no sequence longer
    /// than `maximumPositions`.
    public func hiddenStates(_ sequences: [[Int32]]) -> [Float] {
        let hidden = configuration.hiddenSize
        let tokens = sequences.reduce(0) { $0 + $1.count }
        var x = [Float](repeating: 0, count: tokens * hidden)
        // Embeddings: word + position + token type 0, then LayerNorm.
        x.withUnsafeMutableBufferPointer { x in
            var row = 0
            for sequence in sequences {
                for (position, id) in sequence.enumerated() {
                    let word = Int(id) * hidden
                    let place = position * hidden
                    for j in 0..<hidden {
                        x[row * hidden + j] =
                            wordEmbeddings[word + j] + positionEmbeddings[place + j] + tokenTypeEmbeddings[j]
                    }
                    row += 1
                }
            }
        }
        layerNorm(&x, rows: tokens, embeddingNorm)

        let lengths = sequences.map(\.count)
        var q = [Float](repeating: 0, count: tokens * hidden)
        var k = q
        var v = q
        var context = q
        var projected = q
        var intermediate = [Float](repeating: 0, count: tokens * configuration.intermediateSize)
        for layer in layers {
            apply(layer.query, to: x, rows: tokens, into: &q)
            apply(layer.key, to: x, rows: tokens, into: &k)
            apply(layer.value, to: x, rows: tokens, into: &v)
            attention(q: q, k: k, v: v, lengths: lengths, into: &context)
            apply(layer.attentionOutput, to: context, rows: tokens, into: &projected)
            addInPlace(&x, projected)
            layerNorm(&x, rows: tokens, layer.attentionNorm)
            apply(layer.intermediate, to: x, rows: tokens, into: &intermediate)
            gelu(&intermediate)
            apply(layer.output, to: intermediate, rows: tokens, into: &projected)
            addInPlace(&x, projected)
            layerNorm(&x, rows: tokens, layer.outputNorm)
        }
        return x
    }

    // MARK: - Kernels

    /// Up to this many rows, a product streams the weights once, as float16 (`ck_packed_gemm_f16`,
    /// or in float32 through `ck_small_gemm` without AVX-512), rather than going through `sgemm`,
    /// whose packing of the weights dominates a single short text.
    static let smallProductRows = 32

    /// Whether small products run on float16 weights (`ck_packed_gemm_f16`: AVX-512).
    static let packedHalves = ck_packed_f16_supported() != 0

    /// `y = x W^T + b` for `rows` rows.
    private func apply(_ linear: Linear, to x: [Float], rows: Int, into y: inout [Float]) {
        if rows <= Self.smallProductRows {
            x.withUnsafeBufferPointer { x in
                linear.bias.withUnsafeBufferPointer { bias in
                    y.withUnsafeMutableBufferPointer { y in
                        guard Self.packedHalves, linear.outputs % 64 == 0 else {
                            linear.weight.withUnsafeBufferPointer { w in
                                ck_small_gemm(
                                    x.baseAddress, rows, linear.inputs, w.baseAddress, linear.outputs,
                                    bias.baseAddress, y.baseAddress, linear.outputs)
                            }
                            return
                        }
                        // Half the outputs on each of two cores: each streams half the weights.
                        linear.packed.withUnsafeBufferPointer { packed in
                            nonisolated(unsafe) let (x, packed, bias, y) = (x, packed, bias, y)
                            let (inputs, outputs) = (linear.inputs, linear.outputs)
                            DispatchQueue.concurrentPerform(iterations: 2) { half in
                                let first = half * outputs / 2
                                ck_packed_gemm_f16(
                                    x.baseAddress, rows, inputs, packed.baseAddress! + first * inputs, outputs / 2,
                                    bias.baseAddress! + first, y.baseAddress! + first, outputs)
                            }
                        }
                    }
                }
            }
            return
        }
        y.withUnsafeMutableBufferPointer { y in
            // Start from the bias so one sgemm with beta = 1 adds the product.
            linear.bias.withUnsafeBufferPointer { bias in
                for row in 0..<rows {
                    (y.baseAddress! + row * linear.outputs).update(from: bias.baseAddress!, count: linear.outputs)
                }
            }
            x.withUnsafeBufferPointer { x in
                linear.weight.withUnsafeBufferPointer { w in
                    contextstore_sgemm(
                        0, 1, Int32(rows), Int32(linear.outputs),
                        Int32(linear.inputs),
                        1, x.baseAddress, Int32(linear.inputs), w.baseAddress, Int32(linear.inputs), 1, y.baseAddress,
                        Int32(linear.outputs))
                }
            }
        }
    }

    /// Scaled dot-product attention, per sequence and head, over that sequence's tokens only.
    private func attention(q: [Float], k: [Float], v: [Float], lengths: [Int], into context: inout [Float]) {
        let hidden = configuration.hiddenSize
        let heads = configuration.headCount
        let headSize = hidden / heads
        let scale = 1 / Float(headSize).squareRoot()
        let longest = lengths.max() ?? 0
        var scores = [Float](repeating: 0, count: longest * longest)
        q.withUnsafeBufferPointer { q in
            k.withUnsafeBufferPointer { k in
                v.withUnsafeBufferPointer { v in
                    context.withUnsafeMutableBufferPointer { context in
                        scores.withUnsafeMutableBufferPointer { scores in
                            var start = 0
                            for n in lengths {
                                for head in 0..<heads {
                                    let offset = start * hidden + head * headSize
                                    // scores[n x n] = Q_h K_h^T / sqrt(d)
                                    contextstore_sgemm(
                                        0, 1, Int32(n), Int32(n), Int32(headSize),
                                        scale,
                                        q.baseAddress! + offset, Int32(hidden), k.baseAddress! + offset, Int32(hidden),
                                        0,
                                        scores.baseAddress, Int32(n))
                                    for row in 0..<n { softmax(scores.baseAddress! + row * n, count: n) }
                                    // context_h[n x d] = P V_h
                                    contextstore_sgemm(
                                        0, 0, Int32(n), Int32(headSize), Int32(n),
                                        1,
                                        scores.baseAddress, Int32(n), v.baseAddress! + offset, Int32(hidden), 0,
                                        context.baseAddress! + offset, Int32(hidden))
                                }
                                start += n
                            }
                        }
                    }
                }
            }
        }
    }

    private func softmax(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, row[i]) }
        var sum: Float = 0
        for i in 0..<count {
            row[i] = expf(row[i] - maximum)
            sum += row[i]
        }
        let inverse = 1 / sum
        for i in 0..<count { row[i] *= inverse }
    }

    private func layerNorm(_ x: inout [Float], rows: Int, _ norm: LayerNorm) {
        let hidden = configuration.hiddenSize
        let epsilon = configuration.layerNormEpsilon
        x.withUnsafeMutableBufferPointer { x in
            norm.gamma.withUnsafeBufferPointer { gamma in
                norm.beta.withUnsafeBufferPointer { beta in
                    for row in 0..<rows {
                        let base = x.baseAddress! + row * hidden
                        var mean: Float = 0
                        for j in 0..<hidden { mean += base[j] }
                        mean /= Float(hidden)
                        var variance: Float = 0
                        for j in 0..<hidden {
                            let d = base[j] - mean
                            variance += d * d
                        }
                        variance /= Float(hidden)
                        let inverse = 1 / (variance + epsilon).squareRoot()
                        for j in 0..<hidden { base[j] = (base[j] - mean) * inverse * gamma[j] + beta[j] }
                    }
                }
            }
        }
    }

    /// GELU in the erf form BERT was trained with, `x/2 (1 + erf(x/sqrt 2))`. Branch-free, so
    /// the optimizer vectorizes the loop.
    private func gelu(_ x: inout [Float]) {
        x.withUnsafeMutableBufferPointer { x in
            for i in 0..<x.count { x[i] = 0.5 * x[i] * (1 + Self.erf(x[i] * 0.70710678118654752)) }
        }
    }

    /// erf as a rational function of x (the approximation Eigen and XLA use for float32): absolute
    /// error below 1e-7 on [-4, 4], where it is clamped; erf is +-1 to float precision beyond.
    @inline(__always)
    static func erf(_ input: Float) -> Float {
        let x = min(max(input, -4), 4)
        let x2 = x * x
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 - 2.10102402082508e-06
        p = p * x2 - 5.69250639462346e-05
        p = p * x2 - 7.34990630326855e-04
        p = p * x2 - 2.95459980854025e-03
        p = p * x2 - 1.60960333262415e-02
        var q: Float = -1.45660718464996e-05
        q = q * x2 - 2.13374055278905e-04
        q = q * x2 - 1.68282697438203e-03
        q = q * x2 - 7.37332916720468e-03
        q = q * x2 - 1.42647390514189e-02
        return x * p / q
    }

    private func addInPlace(_ x: inout [Float], _ y: [Float]) {
        x.withUnsafeMutableBufferPointer { x in
            y.withUnsafeBufferPointer { y in
                for i in 0..<x.count { x[i] += y[i] }
            }
        }
    }
}
