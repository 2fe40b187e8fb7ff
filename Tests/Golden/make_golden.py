#!/usr/bin/env python3
"""Golden files for Retort's model-level parity tests (torch, transformers; seeded).

  tiny-bert/            a tiny random BertForSequenceClassification (2 layers, hidden 64,
                        4 heads, 3 labels) saved by transformers: config.json + model.safetensors
  tiny-bert-expected.safetensors
                        a padded batch (input_ids, attention_mask, token_type_ids, labels), its
                        logits and loss, every parameter's gradient ("grad.<name>"), and the
                        losses of 5 AdamW steps ("adamw.losses"; lr 1e-3, weight decay 0.01 except
                        biases and LayerNorm)
  minilm-hidden.safetensors
                        last hidden states of the real all-MiniLM-L6-v2 for a few sentences
  tiny-bert-lora/       PEFT LoRA adapters on tiny-bert (r 4, alpha 8; query, value, attention
                        output, intermediate; lora_B randomised so the branch matters), as peft saves them
  tiny-bert-lora-expected.safetensors
                        the same batch through the LoRA model: logits, loss, the gradients of every
                        adapter and of the classifier, and 5 AdamW steps' losses

  tiny-bert-student/     a tiny random 2-layer student for tiny-bert, narrower (hidden 32, 4 heads),
                        with the same vocab.txt as tiny-bert (both written here)
  tiny-distill-expected.safetensors
                        the distillation losses of tiny-bert → tiny-bert-student, computed as
                        TinyBERT's and DistilBERT's reference code do, on the same batch: for each
                        case (intermediate, prediction, distilbert) every loss term, the total and the
                        gradient of every student parameter and of the projection (fit_dense, whose
                        initial weights are stored too)

  tiny-mpnet/            a tiny random MPNetForSequenceClassification (2 layers, hidden 32, 4 heads,
                        32 relative-position buckets, 3 labels)
  tiny-mpnet-expected.safetensors
                        a padded batch long enough to reach the log-spaced buckets (T = 24, pad id 1),
                        its logits, loss and every parameter's gradient
  tiny-mpnet-lora/       PEFT LoRA adapters on tiny-mpnet (r 4, alpha 8; q, v, o, intermediate.dense;
                        lora_B and the head randomised), as peft saves them
  tiny-mpnet-lora-expected.safetensors
                        peft's logits and loss for tiny-mpnet-expected's batch
  mpnet-hidden.safetensors
                        last hidden states of the real all-mpnet-base-v2 for two sentences, and the
                        ids HF's tokenizer gives them and a sentence pair

usage: python3 Tests/Golden/make_golden.py [tiny] [minilm] [lora] [distill] [mpnet]     (default: all)
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.environ.get("RETORT_ASSETS", os.path.expanduser("~/.cache/retort/assets"))
MINILM = os.path.join(ASSETS, "all-MiniLM-L6-v2")


def batch():
    torch.manual_seed(1)
    B, T = 3, 9
    lengths = [9, 6, 4]
    ids = torch.randint(1, 120, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    types = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0
        types[b, n // 2:n] = 1
    return ids, mask, types, torch.tensor([0, 2, 1])


def randomise(model):
    """Makes every parameter matter: larger weights, non-trivial LayerNorms; eval mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.normal_(1.0, 0.2)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.15)
    model.eval()


def adamw_losses(model, named, ids, mask, types, labels):
    """Losses of 5 AdamW steps (lr 1e-3; weight decay 0.01 except biases and LayerNorm)."""
    decay = [p for n, p in named if not (n.endswith(".bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in named if n.endswith(".bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


def peft_lora(load_base, targets, seeds, name, randomised):
    """peft's LoRA (r 4, alpha 8, no dropout) on the model load_base returns, the parameters whose
    names hold one of `randomised` drawn from normal(0, 0.2) so that they matter; saved as peft
    saves it to HERE/name; in eval mode. seeds: before the base loads (peft draws lora_A from the
    global generator), then for the randomised parameters."""
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seeds[0])
    base = load_base()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="SEQ_CLS", target_modules=targets))
    torch.manual_seed(seeds[1])
    with torch.no_grad():
        for parameter_name, p in model.named_parameters():
            if any(part in parameter_name for part in randomised):
                p.normal_(0.0, 0.2)
    model.eval()
    folder = os.path.join(HERE, name)
    model.save_pretrained(folder)
    if os.path.exists(os.path.join(folder, "README.md")):
        os.remove(os.path.join(folder, "README.md"))
    return model


def tiny_bert_lora():
    model = peft_lora(lambda: BertForSequenceClassification.from_pretrained(os.path.join(HERE, "tiny-bert")),
                      ["query", "value", "attention.output.dense", "intermediate.dense"], (3, 2), "tiny-bert-lora", ["lora_B"])
    ids, mask, types, labels = batch()
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()

    def key(name):
        return name.replace(".default", "").replace("classifier.modules_to_save.", "classifier.")
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
               "logits": out.logits.detach(), "loss": out.loss.detach().reshape(1)}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for name, p in trainable:
        tensors["grad." + key(name)] = p.grad.detach().clone()
    losses = adamw_losses(model, trainable, ids, mask, types, labels)
    tensors["adamw.losses"] = torch.tensor(losses)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(HERE, "tiny-bert-lora-expected.safetensors"))
    print("tiny-bert-lora: loss", out.loss.item(), "trainable", len(trainable), "adamw losses", losses)


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=40, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3,
                        hidden_act="gelu", layer_norm_eps=1e-12)
    model = BertForSequenceClassification(config)
    randomise(model)
    model.save_pretrained(os.path.join(HERE, "tiny-bert"), safe_serialization=True)
    ids, mask, types, labels = batch()
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
               "logits": out.logits.detach(), "loss": out.loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().clone()

    losses = adamw_losses(model, list(model.named_parameters()), ids, mask, types, labels)
    tensors["adamw.losses"] = torch.tensor(losses)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(HERE, "tiny-bert-expected.safetensors"))
    print("tiny-bert: loss", out.loss.item(), "adamw losses", losses)


def minilm():
    tok = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModel.from_pretrained(MINILM).eval()
    sentences = ["a stirring , funny and finally transporting re imagining of beauty and the beast",
                 "Retort distils transformers on its own backend.",
                 "short one"]
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "token_type_ids": enc["token_type_ids"], "last_hidden_state": hidden.contiguous()},
              os.path.join(HERE, "minilm-hidden.safetensors"))
    print("minilm: hidden", tuple(hidden.shape))


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] \
    + ["w%d" % i for i in range(120 - 31)]


def attention_scores(layer, hidden, mask):
    """TinyBERT's attention output: pre-softmax scores q·kᵀ/√d + mask (−10000), then ≤ −100 → 0."""
    att = layer.attention.self
    B, T, _ = hidden.shape
    NH, HS = att.num_attention_heads, att.attention_head_size
    q = att.query(hidden).view(B, T, NH, HS).transpose(1, 2)
    k = att.key(hidden).view(B, T, NH, HS).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / HS ** 0.5 + (1.0 - mask[:, None, None, :].float()) * -10000.0
    return torch.where(scores <= -1e2, torch.zeros_like(scores), scores)


def run_tinybert(model, ids, mask, types):
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    layers = model.bert.encoder.layer
    scores = [attention_scores(layers[l], out.hidden_states[l], mask) for l in range(len(layers))]
    return out.logits, out.hidden_states, scores


def tiny_distill():
    teacher = BertForSequenceClassification.from_pretrained(os.path.join(HERE, "tiny-bert")).eval()
    torch.manual_seed(5)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3,
                        hidden_act="gelu", layer_norm_eps=1e-12, id2label=teacher.config.id2label, label2id=teacher.config.label2id)
    student = BertForSequenceClassification(config)
    randomise(student)
    folder = os.path.join(HERE, "tiny-bert-student")
    student.save_pretrained(folder, safe_serialization=True)
    for f in [folder, os.path.join(HERE, "tiny-bert")]:
        with open(os.path.join(f, "vocab.txt"), "w") as out:
            out.write("\n".join(TINY_VOCAB) + "\n")
    fit = torch.nn.Linear(32, 64)
    with torch.no_grad():
        fit.weight.normal_(0.0, 0.1)
        fit.bias.normal_(0.0, 0.05)
    ids, mask, types, labels = batch()
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
               "fit_dense.weight": fit.weight.detach().clone(), "fit_dense.bias": fit.bias.detach().clone()}
    with torch.no_grad():
        t_logits, t_hidden, t_scores = run_tinybert(teacher, ids, mask, types)
    mse = torch.nn.functional.mse_loss
    layer_map = [(0, 0), (1, 1)]   # k = 1

    def case(name, terms):
        student.zero_grad()
        fit.zero_grad()
        total = sum(terms.values())
        total.backward()
        tensors[name + ".loss"] = total.detach().reshape(1)
        for term, value in terms.items():
            tensors[name + ".term." + term] = value.detach().reshape(1)
        for pname, p in list(student.named_parameters()) + [("fit_dense." + n, p) for n, p in fit.named_parameters()]:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            tensors[name + ".grad." + pname] = g.detach().clone()
        print(name, {k: round(v.item(), 5) for k, v in terms.items()})

    # TinyBERT intermediate stage: attention-score MSE + embedding and hidden-state MSE through fit_dense.
    s_logits, s_hidden, s_scores = run_tinybert(student, ids, mask, types)
    terms = {}
    for s, t in layer_map:
        terms["attention.%d" % s] = mse(s_scores[s], t_scores[t])
    terms["embeddings"] = mse(fit(s_hidden[0]), t_hidden[0])
    for s, t in layer_map:
        terms["hidden.%d" % s] = mse(fit(s_hidden[s + 1]), t_hidden[t + 1])
    case("intermediate", terms)

    # TinyBERT prediction stage, T = 2, with 0.5 · hard-label CE.
    T = 2.0
    s_logits = student(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    soft = (-torch.softmax(t_logits / T, -1) * torch.log_softmax(s_logits / T, -1)).mean()
    hard = torch.nn.functional.cross_entropy(s_logits, labels)
    case("prediction", {"soft": soft, "hard": 0.5 * hard})

    # DistilBERT: 0.5·T²·KL + 0.5·CE + 1.0·(1 − cos) over the real tokens of the last hidden states.
    out = student(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(out.logits / T, -1), torch.softmax(t_logits / T, -1))
    ce = torch.nn.functional.cross_entropy(out.logits, labels)
    sel = mask.bool()
    s_last = fit(out.hidden_states[-1])[sel]
    t_last = t_hidden[-1][sel]
    cos = torch.nn.CosineEmbeddingLoss(reduction="mean")(s_last, t_last, torch.ones(s_last.shape[0]))
    case("distilbert", {"kl": 0.5 * T * T * kl, "hard": 0.5 * ce, "cosine": 1.0 * cos})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(HERE, "tiny-distill-expected.safetensors"))


def tiny_mpnet():
    from transformers import MPNetConfig, MPNetForSequenceClassification
    torch.manual_seed(11)
    config = MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=40, relative_attention_num_buckets=32, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, num_labels=3, hidden_act="gelu", layer_norm_eps=1e-5, pad_token_id=1)
    model = MPNetForSequenceClassification(config)
    randomise(model)
    model.save_pretrained(os.path.join(HERE, "tiny-mpnet"), safe_serialization=True)
    torch.manual_seed(12)
    B, T, lengths = 3, 24, [24, 15, 7]
    ids = torch.randint(5, 120, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 1
    labels = torch.tensor([2, 0, 1])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels,
               "logits": out.logits.detach(), "loss": out.loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(HERE, "tiny-mpnet-expected.safetensors"))
    print("tiny-mpnet: loss", out.loss.item())


def tiny_mpnet_lora():
    """PEFT LoRA on tiny-mpnet (its names: attention.attn.q/v/o, intermediate.dense; the head
    classifier.dense and classifier.out_proj saved whole), lora_B randomised; logits and loss."""
    from transformers import MPNetForSequenceClassification
    model = peft_lora(lambda: MPNetForSequenceClassification.from_pretrained(os.path.join(HERE, "tiny-mpnet")),
                      ["q", "v", "o", "intermediate.dense"], (13, 14), "tiny-mpnet-lora", ["lora_B", "modules_to_save"])
    expected = os.path.join(HERE, "tiny-mpnet-expected.safetensors")
    from safetensors.torch import load_file
    inputs = load_file(expected)
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
    save_file({"logits": out.logits.contiguous(), "loss": out.loss.reshape(1)}, os.path.join(HERE, "tiny-mpnet-lora-expected.safetensors"))
    print("tiny-mpnet-lora: loss", out.loss.item())


def mpnet():
    folder = os.path.join(ASSETS, "all-mpnet-base-v2")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    sentences = ["a gorgeous , witty , seductive movie .", "Retort distils MPNet too."]
    enc = tok(sentences, padding=True, return_tensors="pt")
    pair = tok("the first text", "and the second one", return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "token_type_ids": torch.zeros_like(enc["input_ids"]), "last_hidden_state": hidden.contiguous(),
               "pair_input_ids": pair["input_ids"]}, os.path.join(HERE, "mpnet-hidden.safetensors"))
    print("mpnet: hidden", tuple(hidden.shape), "pair", pair["input_ids"].tolist())


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["tiny", "minilm", "lora", "distill", "mpnet"]
    if "tiny" in chosen:
        tiny_bert()
    if "minilm" in chosen:
        minilm()
    if "lora" in chosen:
        tiny_bert_lora()
    if "distill" in chosen:
        tiny_distill()
    if "mpnet" in chosen:
        tiny_mpnet()
        mpnet()
    if "mpnet" in chosen or "lora" in chosen:
        tiny_mpnet_lora()
