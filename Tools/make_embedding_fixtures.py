#!/usr/bin/env python3
"""Token-embedding models (nn.Embedding before a recurrent stack), PyTorch's outputs on token
ids, and the relevance that ArrasL/LRP_for_LSTM's reference code gives them (issue 29, item 2).

Writes Tests/Fixtures/embedding/:
    emb_bilstm.pt            nn.Embedding(40, 6) → nn.LSTM(6, 5, bidirectional) → nn.Linear(10, 3,
                             bias=False) reading cat(h_n[-2], h_n[-1]): the architecture of Arras
                             et al.'s sentiment model, saved with torch.save(model.state_dict())
    emb_bilstm.safetensors   the same state dict as safetensors
    emb_gru2.safetensors     nn.Embedding(30, 4) as 'word_embeddings' → 2-layer bidirectional
                             nn.GRU(4, 3) → nn.Linear(6, 2) reading the final states
    tokens.safetensors       inputs [8, 7] int64 token ids (< 30), labels [8]
    emb_bilstm.refs.safetensors
        logits [8, 3]        the model's outputs on tokens.safetensors
        target [8]           the predicted class of each sequence
        arras_tokens [8, 7]  LSTM_bidi.lrp(w, target, eps=0.001, bias_factor=0.0): Rx + Rx_rev summed
                             over the embedding dimensions (float64), the peer's per-token relevance
        arras_tokens_bf1 [8, 7]  the same with bias_factor=1.0
        arras_rest_bf1 [8]   the relevance the peer leaves on the initial states (bias_factor=1.0)
    emb_gru2.refs.safetensors: logits [8, 2]
    vocab.txt                40 made-up words, one per line

    python Tools/make_embedding_fixtures.py /path/to/LRP_for_LSTM
The peer is run, not copied: give a checkout of https://github.com/ArrasL/LRP_for_LSTM (commit
1c3073b); its code/LSTM/LSTM_bidi.py runs in a subprocess with numpy on the weights converted to
its layout (gates i, g, f, o; 'Left' the forward direction, 'Right' the reverse). Nothing of it is
written to the fixtures but its numbers. Needs torch, safetensors and numpy.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "embedding")

PEER = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from code.LSTM.LSTM_bidi import LSTM_bidi
w = np.load(sys.argv[2])
net = LSTM_bidi.__new__(LSTM_bidi)
net.E = w["E"]
for side in ("Left", "Right"):
    for name in ("Wxh", "bxh", "Whh", "bhh", "Why"):
        setattr(net, name + "_" + side, w[name + "_" + side])
tokens, targets = w["tokens"], w["targets"]
out = {}
for bf, key in ((0.0, "arras_tokens"), (1.0, "arras_tokens_bf1")):
    rows, rests = [], []
    for n in range(tokens.shape[0]):
        Rx, Rx_rev, R_rest = net.lrp(list(tokens[n]), int(targets[n]), eps=0.001, bias_factor=bf)
        rows.append((Rx + Rx_rev).sum(axis=1))
        rests.append(R_rest)
    out[key] = np.array(rows)
    if bf == 1.0:
        out["arras_rest_bf1"] = np.array(rests)
np.savez(sys.argv[3], **out)
"""


def arras_layout(lstm, head, embedding):
    """The peer's weights: gate blocks reordered from torch's i, f, g, o to its i, g, f, o."""
    d = lstm.hidden_size
    order = np.concatenate([np.arange(0, d), np.arange(2 * d, 3 * d), np.arange(d, 2 * d), np.arange(3 * d, 4 * d)])
    p = {k: v.detach().double().numpy() for k, v in lstm.state_dict().items()}
    V = head.weight.detach().double().numpy()
    w = {"E": embedding.weight.detach().double().numpy()}
    for side, suffix in (("Left", "l0"), ("Right", "l0_reverse")):
        w["Wxh_" + side] = p["weight_ih_" + suffix][order]
        w["Whh_" + side] = p["weight_hh_" + suffix][order]
        w["bxh_" + side] = p["bias_ih_" + suffix][order]
        w["bhh_" + side] = p["bias_hh_" + suffix][order]
    w["Why_Left"], w["Why_Right"] = V[:, :d], V[:, d:]
    return w


def final_states(rnn, head, x):
    _, h_n = rnn(x)
    if isinstance(h_n, tuple):
        h_n = h_n[0]
    return head(torch.cat([h_n[-2], h_n[-1]], dim=1))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_embedding_fixtures.py PATH_TO_LRP_FOR_LSTM_CHECKOUT")
    peer = os.path.abspath(sys.argv[1])
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 30, (8, 7), generator=g)
    labels = torch.randint(0, 2, (8,), generator=g)
    save_file({"inputs": tokens, "labels": labels}, os.path.join(OUT, "tokens.safetensors"))
    with open(os.path.join(OUT, "vocab.txt"), "w") as f:
        for v in range(40):
            f.write(f"w{v}{'<&>' if v == 3 else ''}\n")

    # Arras et al.'s architecture: embedding → one bidirectional LSTM → linear readout, no bias.
    embedding = torch.nn.Embedding(40, 6)
    lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    head = torch.nn.Linear(10, 3, bias=False)
    model = torch.nn.ModuleDict({"embedding": embedding, "lstm": lstm, "head": head})
    state = model.state_dict()
    torch.save(state, os.path.join(OUT, "emb_bilstm.pt"))
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(OUT, "emb_bilstm.safetensors"))
    with torch.no_grad():
        logits = final_states(lstm, head, embedding(tokens))
    targets = logits.argmax(dim=1)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.npz")
        np.savez(weights, tokens=tokens.numpy(), targets=targets.numpy(), **arras_layout(lstm, head, embedding))
        result = os.path.join(tmp, "peer.npz")
        subprocess.run([sys.executable, "-c", PEER, peer, weights, result], check=True, cwd=peer)
        peer_out = dict(np.load(result))
    refs = {"logits": logits, "target": targets}
    refs.update({k: torch.from_numpy(v) for k, v in peer_out.items()})
    save_file({k: v.contiguous() for k, v in refs.items()}, os.path.join(OUT, "emb_bilstm.refs.safetensors"))

    # A deeper stack with its embedding named as Hugging Face models name theirs.
    words = torch.nn.Embedding(30, 4)
    gru = torch.nn.GRU(4, 3, num_layers=2, batch_first=True, bidirectional=True)
    out = torch.nn.Linear(6, 2)
    model = torch.nn.ModuleDict({"word_embeddings": words, "gru": gru, "out": out})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, "emb_gru2.safetensors"))
    with torch.no_grad():
        save_file({"logits": final_states(gru, out, words(tokens)).contiguous()}, os.path.join(OUT, "emb_gru2.refs.safetensors"))
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
