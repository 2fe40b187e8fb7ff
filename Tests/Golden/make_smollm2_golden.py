#!/usr/bin/env python3
"""Golden values for SmolLM2-135M-Instruct read from its Q4_1 GGUF (scripts/fetch-assets smollm2):
transformers dequantises the GGUF to fp32 (gguf_file=), as Retort does.

  smollm2-expected.safetensors
      for each of three prompts i: "prompt<i>.ids" (the GGUF tokenizer's ids), "prompt<i>.logits"
      (the logits [V] at the prompt's last token) and "prompt<i>.greedy" (the first 32 tokens of
      greedy decoding, transformers' generate with do_sample=False)

usage: /path/to/python-with-torch Tests/Golden/make_smollm2_golden.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))
FOLDER = os.path.join(ASSETS, "SmolLM2-135M-Instruct")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The capital of France is",
           "def fibonacci(n):\n",
           "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n"]


def main():
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(FOLDER, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=GGUF, torch_dtype=torch.float32).eval()
    expected = {}
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
            out = model.generate(ids, max_new_tokens=32, do_sample=False, attention_mask=torch.ones_like(ids),
                                 pad_token_id=tokenizer.eos_token_id)
        expected[f"prompt{i}.ids"] = ids[0].to(torch.int32)
        expected[f"prompt{i}.logits"] = logits.float()
        expected[f"prompt{i}.greedy"] = out[0, ids.shape[1]:].to(torch.int32)
        print(repr(prompt), "->", repr(tokenizer.decode(out[0, ids.shape[1]:])))
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(HERE, "smollm2-expected.safetensors"))


if __name__ == "__main__":
    main()
