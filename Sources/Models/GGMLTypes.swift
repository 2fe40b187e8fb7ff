// The tensor types of GGUF files (ggml's type numbers) that Retort reads, and their
// dequantisation to Float. Block layouts (little-endian; d, m, dmin are IEEE halves):
//   F32, F16, BF16   one value per 4 / 2 / 2 bytes
//   Q8_0   32 values in 34 bytes: d, then 32 int8 q;            x = d·q
//   Q4_0   32 values in 18 bytes: d, then 16 bytes of nibbles;  x = d·(q − 8); value j < 16 is
//          byte j's low nibble, value j + 16 its high nibble
//   Q4_1   32 values in 20 bytes: d, m, then 16 bytes as Q4_0;  x = d·q + m
//   Q4_K   256 values in 144 bytes: d, dmin, 12 bytes of 6-bit (scale, min) pairs for 8
//          sub-blocks of 32, then 128 bytes of nibbles; each 32-byte group holds two sub-blocks
//          (low nibbles, then high);                           x = d·scale·q − dmin·min
//   Q6_K   256 values in 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit high parts,
//          16 int8 scales (one per 16 values), d;              x = d·scale·(q − 32)
// Facts from ggml's quantisation formats; checked against gguf-py's dequantize
// (Tests/Golden/make_gguf.py).

public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_K = 12, q6_K = 14, bf16 = 30

    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q6_K: return "Q6_K"
        case .bf16: return "BF16"
        }
    }

    /// Values per block and bytes per block.
    public var block: (values: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q8_0: return (32, 34)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q4_K: return (256, 144)
        case .q6_K: return (256, 210)
        }
    }

    /// ggml's names of the types Retort does not read, for the error that refuses them.
    static let otherNames: [UInt32: String] = [
        6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 13: "Q5_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
        18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
        27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
    ]

    /// "Q5_1 (type 7)", or "type 99" for a number ggml does not define either.
    static func describe(_ raw: UInt32) -> String {
        if let known = GGMLType(rawValue: raw) { return known.name }
        return otherNames[raw].map { "\($0) (type \(raw))" } ?? "type \(raw)"
    }

    /// `count` values (a multiple of the block) from `raw` into `out`.
    func dequantize(_ raw: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        func u8(_ i: Int) -> UInt8 { raw.load(fromByteOffset: i, as: UInt8.self) }
        func i8(_ i: Int) -> Int8 { raw.load(fromByteOffset: i, as: Int8.self) }
        func half(_ i: Int) -> Float { floatFromHalfBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt16.self))) }
        let (perBlock, bytes) = block
        switch self {
        case .f32:
            copyLittleEndianFloats(raw, count: count, into: out)
        case .f16:
            for i in 0..<count { out[i] = half(2 * i) }
        case .bf16:
            for i in 0..<count { out[i] = floatFromBFloat16Bits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .q8_0:
            for b in 0..<(count / perBlock) {
                let at = b * bytes, d = half(at), y = out + b * perBlock
                for j in 0..<32 { y[j] = d * Float(i8(at + 2 + j)) }
            }
        case .q4_0, .q4_1:
            let hasMin = self == .q4_1, quants = hasMin ? 4 : 2
            for b in 0..<(count / perBlock) {
                let at = b * bytes, d = half(at), y = out + b * perBlock
                let m = hasMin ? half(at + 2) : -8 * d   // Q4_0: d·(q − 8) = d·q − 8d
                for j in 0..<16 {
                    let q = u8(at + quants + j)
                    y[j] = d * Float(q & 0xF) + m
                    y[j + 16] = d * Float(q >> 4) + m
                }
            }
        case .q4_K:
            for b in 0..<(count / perBlock) {
                let at = b * bytes, d = half(at), dmin = half(at + 2), scales = at + 4, quants = at + 16
                // The 6-bit scale and min of sub-block s (0…7) from the 12 packed bytes.
                func scaleMin(_ s: Int) -> (Float, Float) {
                    if s < 4 { return (Float(u8(scales + s) & 63), Float(u8(scales + s + 4) & 63)) }
                    let scale = (u8(scales + s + 4) & 0xF) | ((u8(scales + s - 4) >> 6) << 4)
                    let min = (u8(scales + s + 4) >> 4) | ((u8(scales + s) >> 6) << 4)
                    return (Float(scale), Float(min))
                }
                let y = out + b * perBlock
                for group in 0..<4 {   // 64 values: 32 bytes, low nibbles then high
                    let (s1, m1) = scaleMin(2 * group), (s2, m2) = scaleMin(2 * group + 1)
                    let (d1, min1, d2, min2) = (d * s1, dmin * m1, d * s2, dmin * m2)
                    for l in 0..<32 {
                        let q = u8(quants + 32 * group + l)
                        y[64 * group + l] = d1 * Float(q & 0xF) - min1
                        y[64 * group + 32 + l] = d2 * Float(q >> 4) - min2
                    }
                }
            }
        case .q6_K:
            for b in 0..<(count / perBlock) {
                let at = b * bytes, d = half(at + 208)
                for half128 in 0..<2 {   // two halves of 128 values: 64 low-nibble bytes, 32 high-bit bytes, 8 scales
                    let low = at + 64 * half128, high = at + 128 + 32 * half128, scale = at + 192 + 8 * half128
                    let y = out + b * perBlock + 128 * half128
                    for l in 0..<32 {
                        let s = l / 16, h = u8(high + l)
                        let q1 = Int(u8(low + l) & 0xF | (h & 3) << 4) - 32
                        let q2 = Int(u8(low + l + 32) & 0xF | (h >> 2 & 3) << 4) - 32
                        let q3 = Int(u8(low + l) >> 4 | (h >> 4 & 3) << 4) - 32
                        let q4 = Int(u8(low + l + 32) >> 4 | (h >> 6 & 3) << 4) - 32
                        y[l] = d * Float(i8(scale + s)) * Float(q1)
                        y[l + 32] = d * Float(i8(scale + s + 2)) * Float(q2)
                        y[l + 64] = d * Float(i8(scale + s + 4)) * Float(q3)
                        y[l + 96] = d * Float(i8(scale + s + 6)) * Float(q4)
                    }
                }
            }
        }
    }
}
