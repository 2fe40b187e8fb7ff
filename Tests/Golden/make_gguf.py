#!/usr/bin/env python3
"""GGUF fixtures for Retort's GGUF reader, written with llama.cpp's gguf-py (pip install gguf numpy).

  gguf/types.gguf               GGUF v3: metadata of every value type (scalars, strings, arrays,
                                an array of strings) and one tensor per type Retort reads — F32,
                                F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K — with random blocks (random
                                quant bits; scales random but finite), 2-D and 3-D shapes
  gguf/types-expected.safetensors
                                each tensor dequantised to float32 by gguf-py (gguf.quants.dequantize),
                                in HF's dimension order (the reverse of GGUF's ne)
  gguf/unsupported.gguf         one Q5_0 tensor: a type Retort refuses by name
  gguf/no-merges.gguf           a byte-level BPE tokenizer (tokenizer.ggml.*) without its merges
  gguf/llama-bpe.gguf, gguf/qwen2.gguf
                                the tokenizers of tokenizer-json/llama3.json and qwen2.json
                                (make_bpe_json.py) as llama.cpp's converter embeds them: tokens in
                                id order (added tokens as control tokens), merges, pre-type
                                "llama-bpe" / "qwen2"; qwen2.gguf says add_bos_token false, and
                                llama-bpe.gguf leaves it out

usage: /path/to/python Tests/Golden/make_gguf.py
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf")
rng = np.random.default_rng(20261130)


def f16_bits(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_blocks(qtype, blocks):
    """Random quant bits; the f16 scale fields set to random finite values."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)
    def put(offset, lo, hi):
        raw[:, offset:offset + 2] = f16_bits(rng.uniform(lo, hi, size=blocks)).reshape(blocks, 2)
    if qtype in (Q.Q4_0, Q.Q8_0):
        put(0, -0.1, 0.1)
    elif qtype == Q.Q4_1:
        put(0, 0.001, 0.1); put(2, -1, 1)
    elif qtype == Q.Q4_K:
        put(0, 0.001, 0.1); put(2, 0.001, 0.05)
    elif qtype == Q.Q6_K:
        put(208, -0.01, 0.01)
    elif qtype == Q.Q5_0:
        put(0, -0.1, 0.1)
    return raw


def quantised(qtype, ne):
    """A tensor of GGUF shape ne (ne[0] fastest) in qtype: its raw bytes (numpy shape as gguf-py
    stores quantised data: rows × bytes per row) and its values dequantised by gguf-py."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows = int(np.prod(ne[1:]))
    assert ne[0] % block == 0
    raw = random_blocks(qtype, rows * ne[0] // block).reshape(*reversed(ne[1:]), ne[0] // block * size)
    values = gguf.quants.dequantize(raw, qtype).astype(np.float32)
    return raw, values.reshape(*reversed(ne))


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    os.replace(path + ".partial", path)


def main():
    os.makedirs(HERE, exist_ok=True)
    writer = gguf.GGUFWriter(os.path.join(HERE, "types.gguf"), arch="llama")
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4000000000)
    writer.add_int32("test.i32", -2000000000)
    writer.add_float32("test.f32", 0.25)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "héllo, wörld ✓")
    writer.add_uint64("test.u64", 2**63 + 5)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", -1.5e-300)
    writer.add_array("test.strings", ["a", "", "Ġthe", "<|im_start|>"])
    writer.add_array("test.ints", [3, -1, 7])

    expected = {}
    f32 = rng.standard_normal((3, 5)).astype(np.float32)              # HF shape [3, 5]
    writer.add_tensor("plain.f32", f32)
    expected["plain.f32"] = f32
    f16 = rng.standard_normal((2, 3, 8)).astype(np.float16)
    writer.add_tensor("half.f16", f16)
    expected["half.f16"] = f16.astype(np.float32)
    bf16 = (rng.standard_normal((4, 6)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("brain.bf16", bf16.view(np.uint8).reshape(4, 12), raw_dtype=Q.BF16)
    expected["brain.bf16"] = (bf16.astype(np.uint32) << 16).view(np.float32).reshape(4, 6)
    for name, qtype, ne in [("q8_0", Q.Q8_0, [64, 3]), ("q4_0", Q.Q4_0, [96, 2]), ("q4_1", Q.Q4_1, [32, 2, 2]),
                            ("q4_k", Q.Q4_K, [512, 2]), ("q6_k", Q.Q6_K, [256, 3])]:
        raw, values = quantised(qtype, ne)
        writer.add_tensor(name, raw, raw_dtype=qtype)
        expected[name] = values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_safetensors(os.path.join(HERE, "types-expected.safetensors"), expected)

    writer = gguf.GGUFWriter(os.path.join(HERE, "unsupported.gguf"), arch="llama")
    raw, _ = quantised(Q.Q5_0, [32, 2])
    writer.add_tensor("q5_0", raw, raw_dtype=Q.Q5_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    writer = gguf.GGUFWriter(os.path.join(HERE, "no-merges.gguf"), arch="llama")
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", "smollm")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "ab"])
    writer.add_array("tokenizer.ggml.token_type", [1, 1, 1])
    writer.add_tensor("x", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    for kind, pre, add_bos in [("llama3", "llama-bpe", None), ("qwen2", "qwen2", False)]:
        tokenizer_gguf(kind, pre, os.path.join(HERE, f"{pre}.gguf"), add_bos)


def tokenizer_gguf(kind, pre, path, add_bos):
    root = json.load(open(os.path.join(HERE, "..", "tokenizer-json", f"{kind}.json"), encoding="utf-8"))
    vocab, added = root["model"]["vocab"], {t["id"]: t["content"] for t in root["added_tokens"]}
    count = max(max(vocab.values()), max(added)) + 1
    tokens, types = [None] * count, [1] * count          # 1: normal, 3: control
    for token, i in vocab.items():
        tokens[i] = token
    for i, token in added.items():
        tokens[i], types[i] = token, 3
    if None in tokens:
        sys.exit(f"{kind}.json: ids are not contiguous")
    ids = {t: i for i, t in enumerate(tokens)}
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", pre)
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.token_type", types)
    writer.add_array("tokenizer.ggml.merges", [m if isinstance(m, str) else " ".join(m) for m in root["model"]["merges"]])
    writer.add_uint32("tokenizer.ggml.bos_token_id", ids["<|im_start|>"])
    writer.add_uint32("tokenizer.ggml.eos_token_id", ids["<|endoftext|>"])
    if add_bos is not None:
        writer.add_bool("tokenizer.ggml.add_bos_token", add_bos)
    writer.add_tensor("x", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
