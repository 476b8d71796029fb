#!/usr/bin/env python3
"""Load a cllm checkpoint with Hugging Face transformers and compute its loss.

Proves the checkpoint format: `GPT2LMHeadModel.from_pretrained(DIR)` must load the
weights cllm wrote and compute the same mean loss as `cllm eval` on the same windows.
Not part of CI (torch and transformers are never dependencies of cllm).

usage: python3 verification/hf_check.py CHECKPOINT_DIR DATA_FILE
DATA_FILE must hold a whole number of windows of n_positions + 1 bytes; then
`cllm eval --checkpoint DIR DATA_FILE --max-windows K` evaluates exactly the K
consecutive windows this script does, and the two losses must agree to ~1e-5.
"""
import math
import sys

import torch
from transformers import GPT2LMHeadModel

ckpt, data = sys.argv[1], sys.argv[2]
model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
T = model.config.n_positions
raw = open(data, "rb").read()
if len(raw) % (T + 1):
    sys.exit(f"{data}: {len(raw)} bytes is not a multiple of {T + 1}")
w = torch.tensor(list(raw), dtype=torch.long).view(-1, T + 1)
with torch.no_grad():
    logits = model(w[:, :T]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1))
print(f"transformers {__import__('transformers').__version__}: {w.size(0)} windows, "
      f"loss {loss.item():.6f} nats/byte, {loss.item() / math.log(2):.6f} bits/byte")
