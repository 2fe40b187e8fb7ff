#!/usr/bin/env python3
"""tokenizer.json fixtures for Retort's reader: small byte-level BPEs trained here with HF
tokenizers on ../shared/data, one per pre-tokenizer Retort reads, and the ids HF gives.

  tokenizer-json/<kind>.json           the tokenizer (vocabulary of 1,500, its merges, specials)
  tokenizer/json-<kind>-<dataset>.fnv64  one FNV-1a hash of each sentence's ids (as make_bpe_ids.py;
                                       llama3 and qwen2: the splits GPT-2's and SmolLM2's real
                                       tokenizers do not already check on every sentence)
  tokenizer/json-<kind>-cases.json     ids and decoded text of awkward strings

  gpt2    ByteLevel(use_regex=True): GPT-2's split
  smollm  Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]: SmolLM2's
  llama3  Sequence[Split(Llama 3's regex, isolated), ByteLevel(use_regex=False)], and the BPE
          model's ignore_merges (a piece in the vocabulary is one token, merges or not)
  qwen2   NFC, then Sequence[Split(Qwen2's regex), ByteLevel(use_regex=False)]; its special
          tokens added after training, so they are not in the model's vocab (as Qwen2's)

usage: /path/to/python Tests/Golden/make_bpe_json.py     (needs tokenizers)
"""
import json
import os
import struct
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_ids as common  # noqa: E402  (datasets(), fnv64())
from make_bpe_ids import AWKWARD  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EXTRA = ["I'M HERE, YOU'LL SEE, WE'D GO", "x'S y'T z'Re", "line one\r\nline two\r\n\r\n  indented\n\t\ttabs\n", "  \n  \n x",
         "12345678 1234 12 1", "v1.2.3 -> 2024-11-30T12:00", "a\u0301e\u0301 NFC e\u0301", "Ａｂｃ１２３ full width",
         "!!!\n\n???", " 'quoted' \"double\"", "<|im_start|>user\nWhat is 12+345?<|im_end|>\n<|im_start|>assistant\n",
         "tabs\t\tand  \t spaces\u00a0\u00a0nbsp", "...\n", "\u2028line\u2029para", "a\rb\r\rc"]


def split(pattern):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def train(kind, sentences):
    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif kind == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif kind == "llama3":
        tok.pre_tokenizer = split(LLAMA3)
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = split(QWEN2)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  special_tokens=[] if kind == "qwen2" else SPECIAL)
    tok.train_from_iterator(sentences, trainer)
    if kind == "qwen2":
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    spec = json.loads(tok.to_str())
    if kind == "llama3":
        spec["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(spec)), spec


def main():
    data = common.datasets()
    corpus = [s for sentences in data.values() for s in sentences[:3000]]
    os.makedirs(os.path.join(HERE, "tokenizer-json"), exist_ok=True)
    for kind in ["gpt2", "smollm", "llama3", "qwen2"]:
        tok, spec = train(kind, corpus)
        with open(os.path.join(HERE, "tokenizer-json", f"{kind}.json"), "w") as f:
            json.dump(spec, f, ensure_ascii=False, separators=(",", ":"))
        summary = {"tokenizer": kind, "tokenizers": tokenizers.__version__, "datasets": {}}
        for dataset, sentences in (data.items() if kind in ("llama3", "qwen2") else []):
            hashes = [common.fnv64(tok.encode(s).ids) for s in sentences]
            with open(os.path.join(HERE, "tokenizer", f"json-{kind}-{dataset}.fnv64"), "wb") as f:
                f.write(struct.pack("<I", len(hashes)))
                f.write(struct.pack(f"<{len(hashes)}Q", *hashes))
            summary["datasets"][dataset] = len(hashes)
        cases = [{"text": t, "ids": tok.encode(t).ids, "decoded": tok.decode(tok.encode(t).ids, skip_special_tokens=False)}
                 for t in AWKWARD + EXTRA]
        with open(os.path.join(HERE, "tokenizer", f"json-{kind}-cases.json"), "w") as f:
            json.dump({"summary": summary, "cases": cases}, f, ensure_ascii=False, indent=0)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
