#!/usr/bin/env python3
"""Expected GPT-2 byte-level BPE ids for Retort's BPE parity test.

Tokenizes every sentence of ../shared/data (as make_tokenizer_ids.py reads them) with transformers'
GPT2TokenizerFast.from_pretrained on the folder of GPT-2's vocab.json and merges.txt (scripts/fetch-assets gpt2), and
writes per dataset one 64-bit FNV-1a hash of each sentence's ids (int32 little-endian):
  tokenizer/gpt2-<dataset>.fnv64 = u32 count, then count × u64 (little-endian)
plus tokenizer/gpt2-cases.json with the full ids (and the decoded text) of awkward strings.

usage: python3 Tests/Golden/make_bpe_ids.py [GPT2_TOKENIZER_DIR] [SHARED_DATA_DIR]
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
FOLDER = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ASSETS, "gpt2-tokenizer")
if len(sys.argv) > 2:
    common.DATA = sys.argv[2]

AWKWARD = [
    "Hello world", " leading space", "trailing space ", "  two leading", "a  b   c    d", "tab\there", "new\nline\n\nparagraph",
    "\n\n word", "  \tx", "don't can't I'll we've they're she'd it's 'S 'LL", "''quoted''", "email@example.com, http://x.y/z?q=1",
    "1234567890 3.14159 1,000,000 ½ ² ⅷ", "emoji 😀😃 👩‍👩‍👧 🇫🇷 ❤️", "中文字符测试 日本語のテキスト 한국어", "café naïve résumé",
    "e\u0301 combining a\u0308\u0304 marks", "control \u0007\u0000\u001b chars", "zero\u200bwidth\u200d joiners\ufeff",
    "non\u00a0breaking\u2003em space\u3000ideographic", "Ωμέγα ΟΔΟΣ İstanbul ß ǅ", "x" * 300,
    "supercalifragilisticexpialidocious" * 5, "hello<|endoftext|>world <|endoftext|> end", "<|endoftext|>", "",
    "     ", "\r\n\r\n", "--==**!!??", "$100 & 50% off #hashtag @user", "über Ärger ÖL", "ﬁ ligature ﬀ",
]


def main():
    tok = GPT2TokenizerFast.from_pretrained(FOLDER)
    out = os.path.join(HERE, "tokenizer")
    summary = {"transformers": transformers_version, "tokenizer": type(tok).__name__, "datasets": {}}
    for name, sentences in common.datasets().items():
        hashes = [common.fnv64(tok(s)["input_ids"]) for s in sentences]
        with open(os.path.join(out, f"gpt2-{name}.fnv64"), "wb") as f:
            f.write(struct.pack("<I", len(hashes)))
            f.write(struct.pack(f"<{len(hashes)}Q", *hashes))
        summary["datasets"][name] = len(hashes)
    cases = [{"text": t, "ids": tok(t)["input_ids"], "decoded": tok.decode(tok(t)["input_ids"])} for t in AWKWARD]
    with open(os.path.join(out, "gpt2-cases.json"), "w") as f:
        json.dump({"summary": summary, "cases": cases}, f, ensure_ascii=False, indent=0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
