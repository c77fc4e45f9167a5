"""A tiny llama-architecture GGUF model with random weights, written with PyPI's ``gguf`` package.

It is a real model as far as llama.cpp is concerned (SentencePiece-style vocabulary with byte fallback, two
transformer blocks), so llama-server loads it, serves /health and answers completions, in well under a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX = 1024


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    common = ("the", "a", "of", "to", "and", "in", "is", "it", "hello", "world", "llama", "bake")
    words = ["\u2581", *(f"\u2581{w}" for w in common)]
    words += list("abcdefghijklmnopqrstuvwxyz")
    tokens += words
    types += [gguf.TokenType.NORMAL] * len(words)
    scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(path: Path, seed: int = 0, n_ff: int = N_FF) -> str:
    """Write the model to ``path``; return its sha256. The same ``seed`` gives the same bytes; a larger ``n_ff``
    gives a larger model (2048: about 3.4 MB, in tensors of at most 0.5 MB)."""
    _write(path, seed, 0, n_ff)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_tiny_split_gguf(path: Path, seed: int = 0, tensors_per_part: int = 8) -> list[tuple[Path, str]]:
    """The model as a split GGUF, as llama.cpp's tools write one: ``STEM-00001-of-0000N.gguf``, ... beside
    ``path`` (which is not written), at most ``tensors_per_part`` tensors each; returns each part and its sha256."""
    _write(path, seed, tensors_per_part, N_FF)
    parts = sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))
    return [(part, hashlib.sha256(part.read_bytes()).hexdigest()) for part in parts]


def _write(path: Path, seed: int, split_max_tensors: int, n_ff: int) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    writer.add_name(f"llama-bake tiny test model {seed}")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(N_EMBD, dtype=np.float32))

    n_vocab = len(tokens)
    tensor("token_embd.weight", n_vocab, N_EMBD)
    norm("output_norm.weight")
    tensor("output.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        norm(f"blk.{i}.attn_norm.weight")
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", N_EMBD, N_EMBD)
        norm(f"blk.{i}.ffn_norm.weight")
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
