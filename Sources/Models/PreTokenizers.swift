// The pre-tokenizers of byte-level BPE: how text is cut into pieces before the merges, each
// matched by hand over Unicode scalars (first alternative that matches, each greedy; \p{L}
// letters, \p{N} numbers, \s White_Space), as HF tokenizers' regexes cut it:
//   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm  every \p{N} scalar a piece of its own (Digits(individual_digits)), then gpt2
//   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2   the same with \p{N} alone (one digit a piece)
import Foundation

/// Which split a byte-level BPE applies (the names Retort writes and llama.cpp's GGUF pre-types use).
public enum PreTokenizer: String, Sendable, CaseIterable {
    case gpt2, smollm, llama3, qwen2

    /// Llama 3's and Qwen2's split patterns as their tokenizer.json spells them.
    static let regexes: [PreTokenizer: String] = [
        .llama3: #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        .qwen2: #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
    ]

    /// The pieces of `text`, in order; together they are the whole text.
    func pieces(_ text: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        switch self {
        case .gpt2: return GPT2Pattern.pieces(text)
        case .smollm:
            var out: [ArraySlice<Unicode.Scalar>] = [], start = text.startIndex
            for i in text.indices where GPT2Pattern.isNumber(text[i]) {
                out += GPT2Pattern.pieces(text[start..<i])
                out.append(text[i...i])
                start = i + 1
            }
            return out + GPT2Pattern.pieces(text[start...])
        case .llama3: return Llama3Pattern.pieces(text, digits: 3)
        case .qwen2: return Llama3Pattern.pieces(text, digits: 1)
        }
    }
}

/// GPT-2's pre-tokenization pattern, matched by hand (see ByteLevelBPE).
enum GPT2Pattern {
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }
    /// The classes of the pattern's ␣?X+ alternatives, in order: letters, numbers, the rest but spaces.
    static let wordClasses: [@Sendable (Unicode.Scalar) -> Bool] = [isLetter, isNumber, { !isSpace($0) && !isLetter($0) && !isNumber($0) }]

    /// The pieces of `text`, in order; together they are the whole text.
    static func pieces(_ text: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var out: [ArraySlice<Unicode.Scalar>] = []
        var i = text.startIndex
        while i < text.endIndex {
            let length = match(text, at: i)
            out.append(text[i..<(i + length)])
            i += length
        }
        return out
    }

    /// The length of the match at `i` (≥ 1).
    static func match(_ t: ArraySlice<Unicode.Scalar>, at i: Int) -> Int {
        let end = t.endIndex
        func run(from j: Int, _ accept: (Unicode.Scalar) -> Bool) -> Int {
            var k = j
            while k < end, accept(t[k]) { k += 1 }
            return k - j
        }
        // 's 't 're 've 'm 'll 'd
        if t[i] == "'", i + 1 < end {
            let c = t[i + 1]
            if c == "s" || c == "t" || c == "m" || c == "d" { return 2 }
            if i + 2 < end, (c == "r" && t[i + 2] == "e") || (c == "v" && t[i + 2] == "e") || (c == "l" && t[i + 2] == "l") { return 3 }
        }
        // ␣?\p{L}+  ␣?\p{N}+  ␣?[^\s\p{L}\p{N}]+
        for accept in wordClasses {
            let j = t[i] == " " && i + 1 < end ? i + 1 : i
            if j > i, accept(t[j]) { return 1 + run(from: j, accept) }
            if accept(t[i]) { return run(from: i, accept) }
        }
        // \s+(?!\S), else \s+
        let spaces = run(from: i, isSpace)
        if spaces > 0 {
            if i + spaces == end || spaces == 1 { return spaces }
            return spaces - 1   // leave the last space to the word after it
        }
        return 1   // unreachable: every scalar is a letter, a number, a space or other
    }
}


/// Llama 3's (digits 3) and Qwen2's (digits 1) pre-tokenization pattern, matched by hand.
enum Llama3Pattern {
    static func isNewline(_ s: Unicode.Scalar) -> Bool { s == "\r" || s == "\n" }

    static func pieces(_ text: ArraySlice<Unicode.Scalar>, digits: Int) -> [ArraySlice<Unicode.Scalar>] {
        var out: [ArraySlice<Unicode.Scalar>] = []
        var i = text.startIndex
        while i < text.endIndex {
            let length = match(text, at: i, digits: digits)
            out.append(text[i..<(i + length)])
            i += length
        }
        return out
    }

    /// The length of the match at `i` (≥ 1).
    static func match(_ t: ArraySlice<Unicode.Scalar>, at i: Int, digits: Int) -> Int {
        let end = t.endIndex
        func run(from j: Int, _ accept: (Unicode.Scalar) -> Bool) -> Int {
            var k = j
            while k < end, accept(t[k]) { k += 1 }
            return k - j
        }
        let letter = GPT2Pattern.isLetter, number = GPT2Pattern.isNumber, space = GPT2Pattern.isSpace
        // (?i:'s|'t|'re|'ve|'m|'ll|'d): case-insensitive as Oniguruma folds case (ſ, U+017F, is an s)
        func folded(_ s: Unicode.Scalar) -> String { s == "\u{017F}" ? "s" : s.properties.lowercaseMapping }
        if t[i] == "'", i + 1 < end {
            let c = folded(t[i + 1])
            if c == "s" || c == "t" || c == "m" || c == "d" { return 2 }
            if i + 2 < end {
                let pair = c + folded(t[i + 2])
                if pair == "re" || pair == "ve" || pair == "ll" { return 3 }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if letter(t[i]) { return run(from: i, letter) }
        if !isNewline(t[i]), !number(t[i]), i + 1 < end, letter(t[i + 1]) { return 1 + run(from: i + 1, letter) }
        // \p{N}{1,digits}
        if number(t[i]) { return min(run(from: i, number), digits) }
        // ␣?[^\s\p{L}\p{N}]+[\r\n]*
        let other = { (s: Unicode.Scalar) in !space(s) && !letter(s) && !number(s) }
        let j = t[i] == " " && i + 1 < end && other(t[i + 1]) ? i + 1 : i
        if other(t[j]) {
            let k = j + run(from: j, other)
            return k + run(from: k, isNewline) - i
        }
        // \s*[\r\n]+: to just after the last newline of the run of spaces
        let spaces = run(from: i, space)
        if let last = (i..<(i + spaces)).last(where: { isNewline(t[$0]) }) { return last + 1 - i }
        // \s+(?!\S), else \s+
        if spaces > 0 { return i + spaces == end || spaces == 1 ? spaces : spaces - 1 }
        return 1   // unreachable: every scalar is a letter, a number, a space or other
    }
}
