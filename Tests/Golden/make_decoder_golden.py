#!/usr/bin/env python3
"""Golden files for Retort's decoder parity tests (torch, transformers; seeded, tiny random models).

  tiny-gpt2/, tiny-llama/, tiny-qwen2/
                        tiny random decoders saved by transformers (config.json + model.safetensors):
                        GPT-2 (hidden 32, 2 layers, 4 heads, tied head), Llama (grouped-query
                        attention: 4 heads over 2 key/value heads, head_dim 8, untied head, llama3
                        RoPE scaling) and Qwen2 (q/k/v biases, 6 heads over 2, tied head); no dropout
  tiny-<name>-expected.safetensors
                        a right-padded batch (input_ids, attention_mask) and, for causal language
                        modelling (labels = input_ids, -100 at padding; weights normal(0, 0.25) so
                        activations are of order 1): logits, loss and every
                        parameter's gradient ("grad.<name>", transformers' names and shapes);
                        "adamw.losses": 5 AdamW steps (lr 1e-3, weight decay 0.01 except biases
                        and norms); and for sequence classification on the last real token
                        (3 labels, pad_token_id 0): "cls.logits", "cls.loss", "cls.grad.<name>"
  tiny-gpt2-lora/, tiny-llama-lora/
                        PEFT LoRA adapters (r 4, alpha 8, no dropout; GPT-2: c_attn, c_proj; Llama:
                        q_proj, v_proj, gate_proj, down_proj; lora_B randomised so the branch matters),
                        as peft saves them; in the expected file: "lora.logits", "lora.loss",
                        "lora.grad.<module>.lora_A.weight" … and "lora.adamw.losses" (5 steps, adapters only)

usage: /path/to/python-with-torch Tests/Golden/make_decoder_golden.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification)

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 101


def batch():
    torch.manual_seed(3)
    B, T = 3, 11
    lengths = [11, 7, 4]
    ids = torch.randint(1, VOCAB, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0   # the pad token
    return ids, mask


def configs():
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    gpt2 = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      **common)
    llama = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                        intermediate_size=48, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=500.0,
                        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 2.0, "original_max_position_embeddings": 16},
                        tie_word_embeddings=False, **common)
    qwen2 = Qwen2Config(hidden_size=36, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                        intermediate_size=40, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
                        tie_word_embeddings=True, **common)
    return [("gpt2", gpt2, GPT2LMHeadModel, GPT2ForSequenceClassification),
            ("llama", llama, LlamaForCausalLM, LlamaForSequenceClassification),
            ("qwen2", qwen2, Qwen2ForCausalLM, Qwen2ForSequenceClassification)]


def no_decay(name):
    return name.endswith(".bias") or "norm" in name.lower() or ".ln_" in name


def adamw_losses(model, ids, mask, labels, trainable_only=False):
    """5 AdamW steps (lr 1e-3; weight decay 0.01 except biases and norms); the losses."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]
    optimizer = torch.optim.AdamW([{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
                                   {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}], lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


LORA_TARGETS = {"gpt2": ["c_attn", "c_proj"], "llama": ["q_proj", "v_proj", "gate_proj", "down_proj"]}


def lora_case(name, lm_class, folder, ids, mask, labels, expected):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(13)
    base = lm_class.from_pretrained(folder).float()
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS[name], task_type="CAUSAL_LM",
                        fan_in_fan_out=name == "gpt2")
    model = get_peft_model(base, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    model.save_pretrained(os.path.join(HERE, f"tiny-{name}-lora"))
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    expected["lora.logits"] = out.logits.detach()
    expected["lora.loss"] = out.loss.detach().reshape(1)
    for n, p in model.named_parameters():
        if p.requires_grad:
            expected["lora.grad." + n.replace("base_model.model.", "", 1).replace(".default", "")] = p.grad.detach().clone()
    model.zero_grad()
    expected["lora.adamw.losses"] = torch.tensor(adamw_losses(model, ids, mask, labels, trainable_only=True))


def main():
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    for name, config, lm_class, cls_class in configs():
        torch.manual_seed(7)
        model = lm_class(config).float().eval()
        with torch.no_grad():   # activations of order 1 (GELU's forms, RoPE's scaling tell), norms and biases not 1 and 0
            for n, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
                else:
                    p.normal_(0, 0.25)
        folder = os.path.join(HERE, f"tiny-{name}")
        model.save_pretrained(folder, safe_serialization=True)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        expected = {"input_ids": ids.to(torch.int32), "attention_mask": mask.to(torch.int32),
                    "logits": out.logits.detach(), "loss": out.loss.detach().reshape(1)}
        for n, p in model.named_parameters():
            expected["grad." + n] = p.grad.detach().clone()
        fresh = lm_class.from_pretrained(folder).float()
        expected["adamw.losses"] = torch.tensor(adamw_losses(fresh, ids, mask, labels))

        # Classification on the last real token: the same body, a score head (3 labels).
        torch.manual_seed(11)
        cls = cls_class.from_pretrained(folder, num_labels=3).float().eval()
        with torch.no_grad():
            cls.score.weight.normal_(0, 0.5)
        targets = torch.tensor([2, 0, 1])
        out = cls(input_ids=ids, attention_mask=mask, labels=targets)
        out.loss.backward()
        expected["cls.score.weight"] = cls.score.weight.detach().clone()
        expected["cls.logits"] = out.logits.detach()
        expected["cls.loss"] = out.loss.detach().reshape(1)
        expected["cls.labels"] = targets.to(torch.int32)
        for n, p in cls.named_parameters():
            expected["cls.grad." + n] = p.grad.detach().clone()
        if name in LORA_TARGETS:
            lora_case(name, lm_class, folder, ids, mask, labels, expected)
        save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(HERE, f"tiny-{name}-expected.safetensors"))
        print(name, "loss", expected["loss"].item(), "cls loss", expected["cls.loss"].item())


if __name__ == "__main__":
    main()
