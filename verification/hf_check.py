#!/usr/bin/env python3
"""Load a cllm checkpoint with Hugging Face transformers: its loss, and greedy text.

Proves the checkpoint format. Not part of CI (torch and transformers are never
dependencies of cllm).

usage:
  python3 verification/hf_check.py CHECKPOINT_DIR DATA_FILE
      `GPT2LMHeadModel.from_pretrained(DIR)` computes the mean loss over DATA_FILE,
      which must hold a whole number of windows of n_positions + 1 bytes (a byte-level
      checkpoint); `cllm eval --checkpoint DIR DATA_FILE --max-windows K` evaluates
      exactly the K consecutive windows this script does, and the two losses must agree
      to ~1e-5.
  python3 verification/hf_check.py generate CHECKPOINT_DIR PROMPT N [CLLM]
      `AutoTokenizer.from_pretrained(DIR)` encodes PROMPT, `GPT2LMHeadModel` generates
      N tokens greedily, the tokenizer decodes them; CLLM (default target/release/cllm)
      runs `cllm sample --checkpoint DIR --prompt PROMPT --tokens N --temperature 0`.
      Prints both texts and exits 1 unless they are equal (prompt ids + N must fit in
      the model's context).
"""
import math
import subprocess
import sys

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel


def loss_check(ckpt, data):
    model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
    T = model.config.n_positions
    raw = open(data, "rb").read()
    if len(raw) % (T + 1):
        sys.exit(f"{data}: {len(raw)} bytes is not a multiple of {T + 1}")
    w = torch.tensor(list(raw), dtype=torch.long).view(-1, T + 1)
    with torch.no_grad():
        logits = model(w[:, :T]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1))
    print(f"transformers {__import__('transformers').__version__}: {w.size(0)} windows, "
          f"loss {loss.item():.6f} nats/byte, {loss.item() / math.log(2):.6f} bits/byte")


def generate_check(ckpt, prompt, n, cllm):
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    if ids.size(1) == 0:
        sys.exit("the prompt must encode to at least one token")
    if ids.size(1) + n > model.config.n_positions:
        sys.exit(f"prompt ({ids.size(1)} tokens) + {n} exceeds the context "
                 f"{model.config.n_positions}")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=0)
    hf = prompt + tok.decode(out[0, ids.size(1):], clean_up_tokenization_spaces=False)
    ours = subprocess.run(
        [cllm, "sample", "--checkpoint", ckpt, "--prompt", prompt, "--tokens", str(n),
         "--temperature", "0"], check=True, capture_output=True, text=True).stdout
    ours = ours[:-1] if ours.endswith("\n") else ours
    print(f"prompt ids      {ids[0].tolist()}")
    print(f"transformers    {hf!r}")
    print(f"cllm sample     {ours!r}")
    if hf != ours:
        sys.exit("MISMATCH")
    print("same text")


if sys.argv[1] == "generate":
    generate_check(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                   sys.argv[5] if len(sys.argv) > 5 else "target/release/cllm")
else:
    loss_check(sys.argv[1], sys.argv[2])
