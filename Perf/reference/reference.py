#!/usr/bin/env python3
"""Reference timings for Retort's perf suite, measured in the same run.

Reads workload specs, one JSON object per line on stdin (written by `swift run Perf`), and
prints one JSON object per line: {"name", "ms", "impl"} — or {"name", "error"} when a workload
cannot run here. Perf sends each spec right after measuring its own side, once per round; the
built workload is kept while the same name comes back, and {"op": "release"} drops it.
`--device cpu` (default): sgemm in numpy, every other op in PyTorch on the CPU (skipped without
torch). `--device cuda`: everything in PyTorch eager on the GPU, fp32 (TF32
off, as torch's default), timed with a device synchronisation after each run. The shapes come
from the Swift side, so both sides always measure the same thing.
"""
import gc
import json
import os
import statistics
import sys
import time

try:
    import numpy as np
except ImportError:
    np = None

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # numpy-only references still run
    torch = None


DEVICE = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"


def half_type(s):
    """The 16-bit type a spec's "precision" asks for (bf16/fp16 on a GPU: autocast, flash SDPA), or None."""
    if DEVICE != "cuda" or s.get("precision") not in ("bf16", "fp16"):
        return None
    return torch.bfloat16 if s["precision"] == "bf16" else torch.float16


def autocast(s):
    """torch.autocast in the spec's 16-bit type, or a context that changes nothing (fp32)."""
    dtype = half_type(s)
    return torch.autocast(DEVICE, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def autocast_step(s, parameters, optimizer, loss_fn):
    """One optimizer step on loss_fn(): fp32, or torch.autocast in the spec's 16-bit type (fp16
    with a GradScaler), clipping the gradient norm to 1 — PyTorch eager AMP as its docs show it."""
    dtype = half_type(s)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step():
        optimizer.zero_grad()
        with autocast(s):
            loss = loss_fn()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
    return step


def synchronize():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def rand(*shape, grad=False):
    t = torch.randn(*shape, dtype=torch.float32)
    return t.requires_grad_(grad)


def sgemm(s):
    if DEVICE == "cuda":
        a = rand(s["m"], s["k"])
        b = rand(s["n"], s["k"]).t() if s.get("trans_b") else rand(s["k"], s["n"])

        def product():
            with autocast(s):
                a @ b
        return product, f"torch {torch.__version__} cuda matmul (cuBLAS{', fp32' if s.get('precision', 'fp32') == 'fp32' else ''})"
    if np is None:
        raise RuntimeError("numpy is not importable")
    a = np.random.rand(s["m"], s["k"]).astype(np.float32)
    if s.get("trans_b"):   # the weight stored [N, K], as a transformers Linear
        w = np.random.rand(s["n"], s["k"]).astype(np.float32)
        return (lambda: a @ w.T), f"numpy {np.__version__} matmul"
    b = np.random.rand(s["k"], s["n"]).astype(np.float32)
    return (lambda: a @ b), f"numpy {np.__version__} matmul"


def layernorm(s, backward):
    x, w, b = rand(s["n"], s["c"], grad=backward), rand(s["c"], grad=backward), rand(s["c"], grad=backward)
    g = rand(s["n"], s["c"])
    if not backward:
        return lambda: F.layer_norm(x, (s["c"],), w, b, 1e-12)
    return lambda: F.layer_norm(x, (s["c"],), w, b, 1e-12).backward(g)


def gelu(s, backward, approximate="none"):
    x, g = rand(s["n"], grad=backward), rand(s["n"])
    if not backward:
        return lambda: F.gelu(x, approximate=approximate)
    return lambda: F.gelu(x, approximate=approximate).backward(g)


def embedding(s):
    bt, c = s["tokens"], s["c"]
    word, pos, typ = rand(s["vocab"], c, grad=True), rand(s["positions"], c, grad=True), rand(2, c, grad=True)
    ids = torch.randint(0, s["vocab"], (bt,))
    positions = torch.arange(bt) % s["positions"]
    types = torch.zeros(bt, dtype=torch.long)
    g = rand(bt, c)
    return lambda: (F.embedding(ids, word) + F.embedding(positions, pos) + F.embedding(types, typ)).backward(g)


def cross_entropy(s):
    x, y = rand(s["n"], s["classes"], grad=True), torch.randint(0, s["classes"], (s["n"],))
    return lambda: F.cross_entropy(x, y).backward()


def mse(s):
    a, b = rand(s["n"], grad=True), rand(s["n"])
    return lambda: F.mse_loss(a, b).backward()


def cosine(s):
    a, b = rand(s["n"], s["c"], grad=True), rand(s["n"], s["c"])
    target = torch.ones(s["n"])
    return lambda: F.cosine_embedding_loss(a, b, target).backward()


def adamw(s):
    p = torch.nn.Parameter(rand(s["n"]))
    p.grad = rand(s["n"])
    opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.01)
    return opt.step


def lora(s):
    n, i, o, r = s["n"], s["in"], s["out"], s["rank"]
    x, a, b, g = rand(n, i, grad=True), rand(r, i, grad=True), rand(o, r, grad=True), rand(n, o)
    drop = torch.nn.Dropout(s["dropout"])
    scale = s["scale"]
    return lambda: ((drop(x) @ a.t()) @ b.t() * scale).backward(g)


def attention(s):
    B, NH, T, HS = s["batch"], s["heads"], s["length"], s["head_size"]
    dtype = half_type(s)
    if dtype is None:
        q, k, v = (rand(B, NH, T, HS, grad=True) for _ in range(3))
        g = rand(B, NH, T, HS)
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=s.get("causal", False)).backward(g)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(B, NH, T, HS, dtype=dtype).requires_grad_() for _ in range(3))
    g = torch.randn(B, NH, T, HS, dtype=dtype)

    def run():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, k, v, is_causal=s.get("causal", False)).backward(g)
    return run


def bert(s, train):
    from transformers import AutoModelForSequenceClassification
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(s["model"], num_labels=2).to(DEVICE)
    B, T = s["batch"], s["length"]
    ids = torch.randint(1000, 20000, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    types = torch.zeros(B, T, dtype=torch.long) if model.config.model_type == "bert" else None
    labels = torch.randint(0, 2, (B,))
    if s.get("lora"):
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q", "v"] if model.config.model_type == "mpnet" else ["query", "value"],
                                                 task_type="SEQ_CLS"))
    if not train:
        model.eval()
        if s.get("int8"):   # dynamic int8: Linear weights per channel, activations per tensor at run time
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

        def infer():
            with torch.no_grad(), autocast(s):
                model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        return infer
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5)
    return autocast_step(s, trainable, optimizer,
                         lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss)


def distill(s):
    """TinyBERT as its reference code runs it: the teacher (no grad) and a student of its odd
    layers (1st, 3rd, …; "student_layers", default 3) return their pre-softmax attention scores —
    BERT through an attention function that keeps them (as TinyBERT's modified BERT does), MPNet
    by catching the scores its self-attention hands to softmax (mask and relative bias added).
    Intermediate stage: MSE on scores (masked → 0), embeddings and hidden states, student layer i
    against teacher layer 2i (BERT with 3 layers: TinyBERT's uniform map, 2i+1); prediction
    stage: soft cross-entropy. AdamW, clip 1; under autocast at bf16/fp16."""
    import copy
    from transformers import AttentionInterface, AutoConfig, AutoModelForSequenceClassification
    captured, catching = [], [True]   # catching: only inside this workload's step
    mpnet = AutoConfig.from_pretrained(s["model"]).model_type == "mpnet"
    if mpnet:
        real_softmax = torch.nn.functional.softmax

        def catching_softmax(x, dim=None, **kwargs):
            if catching[0] and x.dim() == 4:
                captured.append(x)
            return real_softmax(x, dim=dim, **kwargs)
        torch.nn.functional.softmax = catching_softmax   # what MPNetSelfAttention calls
        extra = {}
    else:
        def scores_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
            scores = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
            if attention_mask is not None:
                scores = scores + attention_mask
            captured.append(scores)
            probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=module.training)
            return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs
        AttentionInterface.register("tinybert_scores", scores_attention)
        extra = {"attn_implementation": "tinybert_scores"}
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(s["model"], num_labels=2, **extra).to(DEVICE).eval()
    layers = s.get("student_layers", 3)
    student = copy.deepcopy(teacher)
    encoder = (student.mpnet if mpnet else student.bert).encoder
    encoder.layer = torch.nn.ModuleList([encoder.layer[2 * i] for i in range(layers)])
    student.config.num_hidden_layers = layers
    student.train()
    B, T = s["batch"], s["length"]
    ids = torch.randint(1000, 20000, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if not mpnet:
        inputs["token_type_ids"] = torch.zeros(B, T, dtype=torch.long)
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-5)
    intermediate = s["stage"] == "intermediate"
    mapped = (lambda i: 2 * i + 1) if (layers == 3 and not mpnet) else (lambda i: 2 * i)

    def zeroed(x):
        return torch.where(x <= -1e2, torch.zeros_like(x), x)

    def loss():
        try:
            catching[0] = True
            return scored_loss()
        finally:
            catching[0] = False

    def scored_loss():
        captured.clear()
        with torch.no_grad():
            t = teacher(**inputs, output_hidden_states=intermediate)
        t_scores = captured[:]
        captured.clear()
        out = student(**inputs, output_hidden_states=intermediate)
        if not intermediate:
            return (-torch.softmax(t.logits, -1) * torch.log_softmax(out.logits, -1)).mean()
        value = sum(F.mse_loss(zeroed(captured[i]), zeroed(t_scores[mapped(i)])) for i in range(layers))
        value = value + F.mse_loss(out.hidden_states[0], t.hidden_states[0])
        return value + sum(F.mse_loss(out.hidden_states[i + 1], t.hidden_states[mapped(i) + 1]) for i in range(layers))
    return autocast_step(s, list(student.parameters()), optimizer, loss)


def smollm2(s):
    """SmolLM2 read from the same GGUF (transformers dequantises it to fp32)."""
    import os
    from transformers import AutoModelForCausalLM
    folder, name = os.path.split(s["model"])
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).to(DEVICE)


def decoder_prefill(s):
    model = smollm2(s).eval()
    ids = torch.tensor([s["ids"]])

    def run():
        with torch.no_grad(), autocast(s):
            model(input_ids=ids, logits_to_keep=1)
    return run


def decoder_generate(s):
    model = smollm2(s).eval()
    ids = torch.tensor([s["ids"]])
    n = s["new_tokens"]

    def run():
        with autocast(s):
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=0)
    return run


def decoder_decode_step(s):
    """One greedy step (a single token, B=1) against a KV cache that already holds `length`
    positions of random keys and values; the step's own position is dropped again after it."""
    from transformers import DynamicCache
    model = smollm2(s).eval()
    c = model.config
    heads, head_size, T = c.num_key_value_heads, c.hidden_size // c.num_attention_heads, s["length"]
    cache = DynamicCache()
    for layer in range(c.num_hidden_layers):
        cache.update(torch.randn(1, heads, T, head_size).to(DEVICE), torch.randn(1, heads, T, head_size).to(DEVICE), layer)
    ids = torch.tensor([[42]], device=DEVICE)
    import inspect   # the cache argument was renamed from past_key_values to cache in transformers 5
    cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def run():
        with torch.no_grad(), autocast(s):
            model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_argument: cache})
        cache.crop(-1)   # drop the step's own position again
    return run


def decoder_lora_step(s):
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(smollm2(s), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    model.train()
    ids = torch.tensor(s["ids"]).reshape(s["batch"], s["length"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    return autocast_step(s, trainable, optimizer, lambda: model(input_ids=ids, labels=ids).loss)


def recurrent(s):
    layer = getattr(torch.nn, s["cell"])(s["input"], s["hidden"], bidirectional=True)
    x = rand(s["length"], s["batch"], s["input"], grad=True)
    g = rand(s["length"], s["batch"], 2 * s["hidden"])
    return lambda: layer(x)[0].backward(g)


TORCH_OPS = {
    "recurrent_forward_backward": recurrent,
    "decoder_prefill": decoder_prefill,
    "decoder_generate": decoder_generate,
    "decoder_decode_step": decoder_decode_step,
    "decoder_lora_step": decoder_lora_step,
    "distill_step": distill,
    "bert_train_step": lambda s: bert(s, True),
    "bert_inference": lambda s: bert(s, False),
    "layernorm_forward": lambda s: layernorm(s, False),
    "layernorm_forward_backward": lambda s: layernorm(s, True),
    "gelu_forward": lambda s: gelu(s, False),
    "gelu_forward_backward": lambda s: gelu(s, True),
    "gelu_tanh_forward": lambda s: gelu(s, False, "tanh"),
    "gelu_tanh_forward_backward": lambda s: gelu(s, True, "tanh"),
    "embedding_forward_backward": embedding,
    "cross_entropy": cross_entropy,
    "mse": mse,
    "cosine": cosine,
    "adamw": adamw,
    "lora_forward_backward": lora,
    "attention_forward_backward": attention,
}


def main():
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else None
    if torch is not None and threads:
        torch.set_num_threads(threads)
    if torch is not None and DEVICE == "cuda":
        torch.set_default_device("cuda")   # every tensor the workloads make lives on the GPU
    # Replies go to the original stdout; anything a library prints goes to stderr, so no stray
    # text can run into a reply line.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        replies.write(json.dumps(obj, allow_nan=False) + "\n")
        replies.flush()

    # Imports done: the Swift side waits for this before it measures anything, so its first
    # workload does not share the CPU with torch's import (a single round ran 1.5× slower).
    reply({"ready": True})
    kept = None   # (name, fn, impl, peak): the workload being measured, kept between rounds
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        if spec.get("op") == "release":   # the Swift side moves on: free the model and its state
            kept = None
            gc.collect()
            if torch is not None and DEVICE == "cuda":
                torch.cuda.empty_cache()
            reply({"released": True})
            continue
        name, op = spec["name"], spec["op"]
        if torch is not None and DEVICE == "cuda":   # Retort at tf32: PyTorch's matmuls in TF32 too
            torch.backends.cuda.matmul.allow_tf32 = spec.get("precision") == "tf32"
        try:
            if kept is None or kept[0] != name:
                kept = None
                kept = (name, *build(spec))
            _, fn, impl, base = kept
            ms = timed(fn, spec.get("warmup", 3), spec.get("reps", 10))
            result = {"name": name, "ms": ms, "impl": impl}
            if base is not None:   # building and every run so far, above what was there before
                result["peak_bytes"] = torch.cuda.max_memory_allocated() - base
            reply(result)
        except Exception as error:  # report and go on: one missing reference must not hide the rest
            reply({"name": name, "error": str(error)})


def build(spec):
    """(fn, impl, base): a workload's run, what measures it, and — on a GPU, when the spec asks
    for its peak memory — the memory allocated before it was built (else None)."""
    op = spec["op"]
    base = None
    if DEVICE == "cuda" and torch is not None and spec.get("peak"):   # its own peak from here on
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    if op == "sgemm" and (DEVICE == "cpu" or torch is not None):
        fn, impl = sgemm(spec)
    elif torch is None:
        raise RuntimeError("torch is not importable")
    elif op in TORCH_OPS:
        fn, impl = TORCH_OPS[op](spec), f"torch {torch.__version__} {DEVICE}"
        if op.startswith("bert") or op.startswith("distill") or op.startswith("decoder"):
            import transformers
            impl += f", transformers {transformers.__version__}"
            if spec.get("lora") or op == "decoder_lora_step":
                import peft
                impl += f", peft {peft.__version__}"
    else:
        raise RuntimeError(f"no reference for op {op}")
    if spec.get("precision") == "tf32" and DEVICE == "cuda":
        impl += ", tf32 matmuls"
    if spec.get("int8"):
        impl += ", quantize_dynamic qint8"
    if half_type(spec) is not None:
        impl += f", {spec['precision']} " + ("(flash SDPA)" if op.startswith("attention") else "(torch.autocast AMP)")
    return fn, impl, base


if __name__ == "__main__":
    main()
