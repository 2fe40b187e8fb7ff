"""Golden files for Retort's recurrent students (Models/RecurrentModel.swift), made by PyTorch:
tiny-recurrent-{lstm,gru,rnn}.safetensors, each a random two-layer bidirectional student of the
form Retort builds and saves —

    embedding = nn.Embedding(V, E, padding_idx=0)
    rnn       = nn.LSTM / nn.GRU / nn.RNN(E, H, num_layers=2, bidirectional=True)   (time-major)
    pooled    = max (lstm) / mean (gru) / last (rnn) over each sequence's real steps
    head      = nn.Sequential(nn.Linear(2H, M), nn.Tanh(), nn.Linear(M, labels))

run on a batch of variable-length sequences through pack_padded_sequence. Stored: the weights
under their PyTorch names, input_ids [B,T], lengths, teacher logits and labels, the last layer's
outputs [T,B,2H] (0 at padding), h_n [4,B,H] (and c_n for the LSTM), logits, the loss
MSE(logits, teacher) + CE(logits, labels), and grad.<name> for every parameter.
Run: python Tests/Golden/make_recurrent_golden.py (torch; seeded)."""
import os
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
V, E, H, M, LABELS, T = 40, 8, 6, 5, 3, 7
LENGTHS = [7, 4, 1, 5]


class Student(nn.Module):
    def __init__(self, cell, pooling):
        super().__init__()
        self.pooling = pooling
        self.embedding = nn.Embedding(V, E, padding_idx=0)
        self.rnn = getattr(nn, cell)(E, H, num_layers=2, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * H, M), nn.Tanh(), nn.Linear(M, LABELS))

    def forward(self, ids, lengths):
        x = self.embedding(ids.t())                                   # [T,B,E]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, state = self.rnn(packed)
        y, _ = pad_packed_sequence(out, total_length=ids.shape[1])   # [T,B,2H], 0 at padding
        steps = torch.arange(ids.shape[1])[:, None]
        valid = (steps < lengths[None, :])[..., None]                 # [T,B,1]
        if self.pooling == "max":
            pooled = y.masked_fill(~valid, float("-inf")).max(0).values
        elif self.pooling == "mean":
            pooled = (y * valid).sum(0) / lengths[:, None].float()
        else:                                                         # last: forward at len−1, reverse at 0
            b = torch.arange(ids.shape[0])
            pooled = torch.cat([y[lengths - 1, b, :H], y[0, :, H:]], dim=1)
        return self.head(pooled), y, state


def make(cell, pooling, seed):
    torch.manual_seed(seed)
    model = Student(cell, pooling)
    with torch.no_grad():   # larger weights than the defaults, so the gates leave their linear range
        for name, p in model.named_parameters():
            if name.startswith("rnn."):
                p.uniform_(-0.6, 0.6)
    lengths = torch.tensor(LENGTHS)
    ids = torch.randint(1, V, (len(LENGTHS), T))
    for b, n in enumerate(LENGTHS):
        ids[b, n:] = 0
    teacher = torch.randn(len(LENGTHS), LABELS)
    labels = torch.randint(0, LABELS, (len(LENGTHS),))
    logits, y, state = model(ids, lengths)
    y.retain_grad()
    loss = nn.functional.mse_loss(logits, teacher) + nn.functional.cross_entropy(logits, labels)
    loss.backward()
    tensors = {name: p.detach().clone() for name, p in model.named_parameters()}
    tensors.update({"input_ids": ids, "lengths": lengths, "teacher": teacher, "labels": labels, "output": y.detach(),
                    "logits": logits.detach(), "loss": loss.detach().reshape(1)})
    if cell == "LSTM":
        tensors["h_n"], tensors["c_n"] = state[0].detach(), state[1].detach()
    else:
        tensors["h_n"] = state.detach()
    tensors.update({"grad." + name: p.grad.clone() for name, p in model.named_parameters()})
    path = os.path.join(HERE, f"tiny-recurrent-{cell.lower()}.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"pooling": pooling})
    print(path, f"loss {loss.item():.6f}")


make("LSTM", "max", 1)
make("GRU", "mean", 2)
make("RNN", "last", 3)
