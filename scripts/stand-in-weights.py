#!/usr/bin/env python3
"""Stand-in weights for a GPU machine the real ones cannot reach (a call carries 64 MiB).

  stand-in-weights.py cut ASSETS DEST   here: the small files of all-MiniLM-L6-v2 and
                                         SmolLM2-135M-Instruct and the headers of their weight
                                         files (the safetensors JSON header; the GGUF header,
                                         metadata and tokenizer included, up to its tensor data):
                                         about 2.5 MB for 190 MB of weights
  stand-in-weights.py fill DEST ASSETS  there: the same files, every tensor filled with random
                                         values of its own type and shape (numpy, seeded), so the
                                         models load, run and time as the real ones do

Speed does not depend on the values, and backend-check compares a device with the CPU on the
same weights, so both hold on stand-ins; what needs the trained values (accuracy, the logits
against transformers) is checked where the real weights are. Stand-in values: matrices uniform
on about ±0.035 (std 0.02, as transformers' initialisation), norm weights near 1, biases near 0.
Python's standard library here; numpy there. Exit status 2 with one line on a missing or
unreadable file.
"""
import json
import os
import shutil
import struct
import sys

MINILM, SMOL = "all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# GGML types this script can fill: (elements per block, bytes per block).
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34)}   # F32 F16 Q4_0 Q4_1 Q8_0
GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def die(message):
    print(f"stand-in-weights: {message}", file=sys.stderr)
    sys.exit(2)


def gguf_layout(path):
    """(data start, [(name, ggml type, element count, offset from data start)]) of a GGUF file."""
    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize("<" + fmt)
            raw = f.read(size)
            if len(raw) != size:
                die(f"{path}: ends inside its header")
            return struct.unpack("<" + fmt, raw)[0]

        def string():
            return f.read(read("Q")).decode("utf-8", "replace")

        def value(kind):
            if kind in GGUF_SCALARS:
                return read(GGUF_SCALARS[kind])
            if kind == 8:
                return string()
            if kind == 9:
                inner, count = read("I"), read("Q")
                return [value(inner) for _ in range(count)]
            die(f"{path}: metadata value type {kind} unknown")

        if f.read(4) != b"GGUF":
            die(f"{path}: not a GGUF file")
        version, tensors, entries = read("I"), read("Q"), read("Q")
        if version < 2:
            die(f"{path}: GGUF version {version} (2 or 3 expected)")
        alignment = 32
        for _ in range(entries):
            key = string()
            v = value(read("I"))
            if key == "general.alignment":
                alignment = v
        layout = []
        for _ in range(tensors):
            name = string()
            dims = [read("Q") for _ in range(read("I"))]
            kind, offset = read("I"), read("Q")
            count = 1
            for d in dims:
                count *= d
            layout.append((name, kind, count, offset))
        start = (f.tell() + alignment - 1) // alignment * alignment
    return start, layout


def cut(assets, dest):
    minilm, smol = os.path.join(assets, MINILM), os.path.join(assets, SMOL, GGUF_NAME)
    for need in (os.path.join(minilm, "model.safetensors"), smol):
        if not os.path.isfile(need):
            die(f"{need} not found (scripts/fetch-assets minilm smollm2)")
    out = os.path.join(dest, MINILM)
    os.makedirs(out, exist_ok=True)
    for entry in os.listdir(minilm):   # everything but the weights: config, tokenizer, pooling
        source = os.path.join(minilm, entry)
        if entry == "model.safetensors" or entry.startswith("."):
            continue
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, os.path.join(out, entry))
    with open(os.path.join(minilm, "model.safetensors"), "rb") as f:
        head = f.read(8)
        header = head + f.read(struct.unpack("<Q", head)[0])
    with open(os.path.join(out, "model.safetensors.header"), "wb") as f:
        f.write(header)
    start, _ = gguf_layout(smol)
    os.makedirs(os.path.join(dest, SMOL), exist_ok=True)
    with open(smol, "rb") as f, open(os.path.join(dest, SMOL, GGUF_NAME + ".header"), "wb") as g:
        g.write(f.read(start))


def random_values(rng, name, count):
    import numpy as np
    if "norm" in name.lower() and name.endswith(".weight"):
        return (1 + rng.normal(0, 0.05, count)).astype(np.float32)
    if name.endswith(".bias"):
        return rng.normal(0, 0.02, count).astype(np.float32)
    return rng.uniform(-0.035, 0.035, count).astype(np.float32)


def ggml_bytes(rng, name, kind, count):
    """`count` random values of GGML type `kind` in its block layout."""
    import numpy as np
    per, size = GGML_BLOCKS[kind]
    if kind == 0:
        return random_values(rng, name, count).tobytes()
    if kind == 1:
        return random_values(rng, name, count).astype(np.float16).tobytes()
    blocks = count // per
    raw = np.empty((blocks, size), dtype=np.uint8)
    raw[:, :] = rng.integers(0, 256, size=(blocks, size), dtype=np.uint8)   # the quants
    if kind == 8:   # Q8_0: d · q, q int8 in [-127, 127]
        raw[:, 0:2] = np.full(blocks, 0.035 / 127, dtype=np.float16).view(np.uint8).reshape(blocks, 2)
        raw[:, 2:] = rng.integers(-127, 128, size=(blocks, 32), dtype=np.int8).view(np.uint8)
    elif kind == 3:   # Q4_1: d · q + m, q in [0, 15]
        raw[:, 0:2] = np.full(blocks, 0.07 / 15, dtype=np.float16).view(np.uint8).reshape(blocks, 2)
        raw[:, 2:4] = np.full(blocks, -0.035, dtype=np.float16).view(np.uint8).reshape(blocks, 2)
    else:             # Q4_0: d · (q − 8)
        raw[:, 0:2] = np.full(blocks, 0.07 / 15, dtype=np.float16).view(np.uint8).reshape(blocks, 2)
    return raw.tobytes()


def write_atomically(path, chunks):
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    os.replace(temporary, path)


def fill(source, assets):
    import numpy as np
    rng = np.random.default_rng(20261130)
    header_path = os.path.join(source, MINILM, "model.safetensors.header")
    smol_header = os.path.join(source, SMOL, GGUF_NAME + ".header")
    for need in (header_path, smol_header):
        if not os.path.isfile(need):
            die(f"{need} not found (made by: stand-in-weights.py cut)")
    out = os.path.join(assets, MINILM)
    shutil.copytree(os.path.join(source, MINILM), out, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.header"))
    with open(header_path, "rb") as f:
        header = f.read()
    entries = json.loads(header[8:])

    def tensors():
        yield header
        position = 0
        for name, entry in sorted(((k, v) for k, v in entries.items() if k != "__metadata__"),
                                  key=lambda item: item[1]["data_offsets"][0]):
            begin, end = entry["data_offsets"]
            yield b"\0" * (begin - position)
            if entry["dtype"] == "F32":
                yield random_values(rng, name, (end - begin) // 4).tobytes()
            elif entry["dtype"] == "I64":   # BERT's position_ids buffer: 0, 1, 2, …
                yield np.arange((end - begin) // 8, dtype=np.int64).tobytes()
            else:
                die(f"{header_path}: {name} is {entry['dtype']} (F32 or I64 expected)")
            position = end
    write_atomically(os.path.join(out, "model.safetensors"), tensors())

    start, layout = gguf_layout(smol_header)
    with open(smol_header, "rb") as f:
        head = f.read()

    def blocks():
        yield head + b"\0" * (start - len(head))
        position = 0
        for name, kind, count, offset in sorted(layout, key=lambda t: t[3]):
            if kind not in GGML_BLOCKS:
                die(f"{smol_header}: {name} has GGML type {kind}, which this script cannot fill")
            yield b"\0" * (offset - position)
            data = ggml_bytes(rng, name, kind, count)
            yield data
            position = offset + len(data)
    os.makedirs(os.path.join(assets, SMOL), exist_ok=True)
    write_atomically(os.path.join(assets, SMOL, GGUF_NAME), blocks())


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("cut", "fill"):
        print(__doc__.strip().split("\n\n")[0])
        sys.exit(2)
    (cut if sys.argv[1] == "cut" else fill)(sys.argv[2], sys.argv[3])
