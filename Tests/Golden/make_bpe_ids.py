#!/usr/bin/env python3
"""Expected byte-level BPE ids for Retort's BPE parity tests.

Tokenizes every sentence of ../shared/data (as make_tokenizer_ids.py reads them) and writes per
dataset one 64-bit FNV-1a hash of each sentence's ids (int32 little-endian):
  tokenizer/<name>-<dataset>.fnv64 = u32 count, then count × u64 (little-endian)
plus tokenizer/<name>-cases.json with the full ids (and the decoded text) of awkward strings.

  gpt2      transformers' GPT2TokenizerFast.from_pretrained on the folder of GPT-2's vocab.json
            and merges.txt (scripts/fetch-assets gpt2)
  smollm2   HF tokenizers built from the tokenizer SmolLM2-135M-Instruct's GGUF embeds (tokens,
            merges, control tokens as special tokens), with SmolLM2's pre-tokenizer:
            Digits(individual_digits=True) then ByteLevel (llama.cpp's "smollm" pre-type is the same
            split); transformers' own GGUF loading needs torch, which this machine lacks

usage: python3 Tests/Golden/make_bpe_ids.py [gpt2|smollm2 ...]      (default: both)
"""
import json
import os
import struct
import sys

from transformers import GPT2TokenizerFast, __version__ as transformers_version

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_ids as common  # noqa: E402  (datasets(), fnv64())

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))

AWKWARD = [
    "Hello world", " leading space", "trailing space ", "  two leading", "a  b   c    d", "tab\there", "new\nline\n\nparagraph",
    "\n\n word", "  \tx", "don't can't I'll we've they're she'd it's 'S 'LL", "''quoted''", "email@example.com, http://x.y/z?q=1",
    "1234567890 3.14159 1,000,000 ½ ² ⅷ", "emoji 😀😃 👩‍👩‍👧 🇫🇷 ❤️", "中文字符测试 日本語のテキスト 한국어", "café naïve résumé",
    "e\u0301 combining a\u0308\u0304 marks", "control \u0007\u0000\u001b chars", "zero\u200bwidth\u200d joiners\ufeff",
    "non\u00a0breaking\u2003em space\u3000ideographic", "Ωμέγα ΟΔΟΣ İstanbul ß ǅ", "x" * 300,
    "supercalifragilisticexpialidocious" * 5, "hello<|endoftext|>world <|endoftext|> end", "<|endoftext|>", "",
    "     ", "\r\n\r\n", "--==**!!??", "$100 & 50% off #hashtag @user", "über Ärger ÖL", "ﬁ ligature ﬀ",
]


class SmolLM2Tokenizer:
    """HF tokenizers configured as SmolLM2's tokenizer, from the GGUF's tokenizer.ggml.* arrays."""

    def __init__(self, path):
        import gguf
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
        reader = gguf.GGUFReader(path)
        def strings(key):
            field = reader.fields[key]
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
        field = reader.fields["tokenizer.ggml.token_type"]
        types = [int(field.parts[i][0]) for i in field.data]
        self.tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ")) for m in merges]))
        self.tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        self.tok.decoder = decoders.ByteLevel()
        self.tok.add_special_tokens([AddedToken(t, special=True) for t, kind in zip(tokens, types) if kind in (3, 4)])

    def __call__(self, text):
        return {"input_ids": self.tok.encode(text).ids}

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)


def write(name, tok):
    out = os.path.join(HERE, "tokenizer")
    import tokenizers
    summary = {"tokenizer": name, "transformers": transformers_version, "tokenizers": tokenizers.__version__, "datasets": {}}
    for dataset, sentences in common.datasets().items():
        hashes = [common.fnv64(tok(s)["input_ids"]) for s in sentences]
        with open(os.path.join(out, f"{name}-{dataset}.fnv64"), "wb") as f:
            f.write(struct.pack("<I", len(hashes)))
            f.write(struct.pack(f"<{len(hashes)}Q", *hashes))
        summary["datasets"][dataset] = len(hashes)
    texts = AWKWARD + (SMOLLM2_EXTRA if name == "smollm2" else [])
    cases = [{"text": t, "ids": tok(t)["input_ids"], "decoded": tok.decode(tok(t)["input_ids"])} for t in texts]
    with open(os.path.join(out, f"{name}-cases.json"), "w") as f:
        json.dump({"summary": summary, "cases": cases}, f, ensure_ascii=False, indent=0)
    print(json.dumps(summary))


SMOLLM2_EXTRA = ["<|im_start|>user\nWhat is 12+345?<|im_end|>\n<|im_start|>assistant\n", "year 2024: 3.5% of 1,000",
                 "<repo_name>x<file_sep>y<|endoftext|>", "١٢٣ Arabic-Indic digits, ½ fractions, Ⅻ numerals"]


def main():
    chosen = sys.argv[1:] or ["gpt2", "smollm2"]
    if "gpt2" in chosen:
        tok = GPT2TokenizerFast.from_pretrained(os.path.join(ASSETS, "gpt2-tokenizer"))
        write("gpt2", tok)
    if "smollm2" in chosen:
        write("smollm2", SmolLM2Tokenizer(os.path.join(ASSETS, "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")))


if __name__ == "__main__":
    main()
