#!/usr/bin/env python3
"""Peak memory of a LoRA causal-LM run on SmolLM2-135M-Instruct, Retort beside PyTorch + PEFT.

Each side runs in its own process and does the same: read the Q4_1 GGUF (dequantised to fp32),
LoRA r 8 / alpha 16 / dropout 0.05 on q_proj and v_proj, then 3 AdamW steps at batch 8 of 128
tokens on the CPU. The figure is the process's peak resident memory (VmHWM in /proc/PID/status,
polled while it runs): loading, the steps, and for Retort its data and output writing.

  Retort:  retort finetune --task causal-lm on CoLA's training sentences, --max-steps 3
  PyTorch: transformers' GGUF reader, peft, torch.optim.AdamW, labels = inputs (random ids)

usage: /path/to/python scripts/lora-memory.py [--retort PATH]   (python with torch, transformers,
       peft and gguf; retort defaults to .build/release/retort)
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))
GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
B, T, STEPS = 8, 128, 3


def torch_side():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    folder, name = os.path.split(GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    generator = torch.Generator().manual_seed(7)
    for _ in range(STEPS):
        ids = torch.randint(1000, 41000, (B, T), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()


def peak_of(command):
    """Runs command, polling its VmHWM; returns (peak bytes, seconds, exit status)."""
    start, peak = time.time(), 0
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.02)
    error = process.stderr.read()
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}): {error.strip().splitlines()[-1] if error.strip() else ''}")
    return peak, time.time() - start


def main():
    if "--torch-side" in sys.argv:
        torch_side()
        return
    if not os.path.exists(GGUF):
        sys.exit(f"{GGUF} not found: run scripts/fetch-assets smollm2")
    retort = sys.argv[sys.argv.index("--retort") + 1] if "--retort" in sys.argv else os.path.join(ROOT, ".build", "release", "retort")
    with tempfile.TemporaryDirectory() as folder:
        text = os.path.join(folder, "cola.txt")
        with open(os.path.join(ROOT, "..", "shared", "data", "cola", "train.tsv"), encoding="utf-8") as source, \
             open(text, "w", encoding="utf-8") as out:
            out.writelines(line.split("\t")[0] + "\n" for line in source if line.strip())
        rows = [("Retort", peak_of([retort, "finetune", "--model", GGUF, "--task", "causal-lm", "--train", text, "--lora-rank", "8",
                                    "--lora-dropout", "0.05", "--batch-size", str(B), "--max-length", str(T),
                                    "--max-steps", str(STEPS), "--device", "cpu", "--out", os.path.join(folder, "run")])),
                ("PyTorch + PEFT", peak_of([sys.executable, os.path.abspath(__file__), "--torch-side"]))]
    print(f"peak resident memory: SmolLM2-135M, LoRA r8 q,v, {STEPS} steps at B={B} T={T} (load included)")
    for name, (peak, seconds) in rows:
        print(f"  {name:16s} {peak / 2**20:8.0f} MiB   ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
