#!/usr/bin/env python3
"""The PyTorch + PEFT side of the CoLA comparison in the README: SmolLM2-135M-Instruct read from
its GGUF (transformers dequantises it to fp32) as LlamaForSequenceClassification (pad token = the
end token), LoRA r 8, alpha 16, dropout 0.1 on q_proj and v_proj, the score head trained fully;
AdamW lr 1e-3, weight decay 0.01 (not on biases and norms), linear warmup over 10 % then linear
decay, gradient clipping at 1, batch 32, max length 64, seeded shuffling; dev accuracy and
Matthews correlation after every epoch — the recipe `retort finetune --lora-rank 8` runs.

usage: python scripts/cola-peft-reference.py [--epochs N] [--threads N] [--seed S]
"""
import math
import os
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))
FOLDER, GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct"), "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "cola")


def read(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8") if line.strip()]
    return [(r[0], int(r[1])) for r in rows]


def mcc(pred, gold):
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold)); tn = sum(p == 0 and g == 0 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold)); fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / d if d else 0.0


def main():
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 3
    torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else os.cpu_count())
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 42
    torch.manual_seed(seed)
    random.seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(FOLDER, gguf_file=GGUF)
    model = AutoModelForSequenceClassification.from_pretrained(FOLDER, gguf_file=GGUF, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.eos_token_id
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
                                             task_type="SEQ_CLS"))
    train, dev = read(os.path.join(DATA, "train.tsv")), read(os.path.join(DATA, "dev.tsv"))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in named if n.endswith(".bias") or "norm" in n.lower()]
    decay = [p for n, p in named if not (n.endswith(".bias") or "norm" in n.lower())]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    B = 32
    total = epochs * math.ceil(len(train) / B)
    warmup = math.ceil(0.1 * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(total - warmup, 1)))

    def batch(rows):
        enc = tokenizer([t for t, _ in rows], padding=True, truncation=True, max_length=64, return_tensors="pt", add_special_tokens=False)
        return enc, torch.tensor([y for _, y in rows])

    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = list(range(len(train)))
        random.shuffle(order)
        for i in range(0, len(order), B):
            enc, y = batch([train[j] for j in order[i:i + B]])
            loss = model(**enc, labels=y).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            optimizer.step()
            schedule.step()
        model.eval()
        predictions = []
        with torch.no_grad():
            for i in range(0, len(dev), 64):
                enc, _ = batch(dev[i:i + 64])
                predictions += model(**enc).logits.argmax(-1).tolist()
        gold = [y for _, y in dev]
        accuracy = sum(p == g for p, g in zip(predictions, gold)) / len(gold)
        print(f"epoch {epoch}: dev accuracy {accuracy:.4f}  MCC {mcc(predictions, gold):.4f}  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
