#!/usr/bin/env python3
"""Expected WordPiece ids for Retort's tokenizer parity test.

Tokenizes every sentence of ../shared/data (SST-2 train+test, CoLA train+dev, the hate-speech
tweets) with transformers' AutoTokenizer loaded from the all-MiniLM-L6-v2 folder, and writes,
per dataset, one 64-bit FNV-1a hash of each sentence's ids (int32 little-endian bytes):
  tokenizer/<dataset>.fnv64 = u32 count, then count × u64 (little-endian)
plus tokenizer/cases.json with full ids for pairs, truncation and special-token cases.
Sentences are read exactly as Retort reads them: TSV lines split on tabs without quoting,
the CSV through Python's csv module.

usage: python3 Tests/Golden/make_tokenizer_ids.py [MODEL_DIR] [SHARED_DATA_DIR]
"""
import csv
import json
import os
import struct
import sys

from transformers import AutoTokenizer, __version__ as transformers_version

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ASSETS, "all-MiniLM-L6-v2")
DATA = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "..", "shared", "data")


def tsv_column(path, column):
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if line:
                out.append(line.split("\t")[column])
    return out


def datasets():
    sst2 = tsv_column(f"{DATA}/sst2/train.tsv", 1) + tsv_column(f"{DATA}/sst2/test.tsv", 1)
    cola = tsv_column(f"{DATA}/cola/train.tsv", 0) + tsv_column(f"{DATA}/cola/dev.tsv", 0)
    with open(f"{DATA}/hate_speech/labeled_data.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("tweet")
    hate = [r[column] for r in rows[1:]]
    return {"sst2": sst2, "cola": cola, "hate_speech": hate}


def fnv64(ids):
    h = 0xCBF29CE484222325
    for byte in struct.pack(f"<{len(ids)}i", *ids):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    out = os.path.join(HERE, "tokenizer")
    os.makedirs(out, exist_ok=True)
    summary = {"transformers": transformers_version, "tokenizer": type(tok).__name__, "datasets": {}}
    data = datasets()
    for name, sentences in data.items():
        hashes = [fnv64(tok(s)["input_ids"]) for s in sentences]
        with open(os.path.join(out, f"{name}.fnv64"), "wb") as f:
            f.write(struct.pack("<I", len(hashes)))
            f.write(struct.pack(f"<{len(hashes)}Q", *hashes))
        summary["datasets"][name] = len(hashes)
    cases = []
    sst = data["sst2"]
    for i, max_length in enumerate([8, 9, 12, 16, 17, 24, 32, 40, 64]):
        a, b = sst[3 * i], sst[3 * i + 1]
        for first, second in [(a, b), (b, a), (a[:30], b), (a, b[:20])]:
            enc = tok(first, second, truncation="longest_first", max_length=max_length)
            cases.append({"a": first, "b": second, "max_length": max_length,
                          "ids": enc["input_ids"], "type_ids": enc["token_type_ids"]})
        enc = tok(a, truncation=True, max_length=max_length)
        cases.append({"a": a, "max_length": max_length, "ids": enc["input_ids"], "type_ids": enc["token_type_ids"]})
    for text in ["hello [SEP] world [MASK]!", "[CLS][UNK]x", "café ΟΔΟΣ İstanbul 中文 😀 a\u00adb\u200dc"]:
        enc = tok(text)
        cases.append({"a": text, "ids": enc["input_ids"], "type_ids": enc["token_type_ids"]})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"summary": summary, "cases": cases}, f, ensure_ascii=False, indent=0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
