"""Benchmark: ``weight_stats`` on a large sharded safetensors checkpoint, streamed.

Writes a synthetic LLM-shaped checkpoint in the Hugging Face sharded layout (bf16, several
shards + ``model.safetensors.index.json``) of ``--gib`` GiB to a temporary directory (deleted
afterwards; ``df -h`` checked first), then, each in a fresh process so its peak RSS is its own:

- netxray: ``weight_stats(DIR)`` — tensor by tensor with one read per tensor (its byte range from the header), no model built;
- naive: ``safetensors.torch.load_file`` of every shard into one state dict, then the
  per-tensor statistics (what loading the model first amounts to).

Prints time, peak RSS, the largest tensor and the goal: peak ≤ largest tensor + 300 MB
above the process's own baseline (its resident memory after importing torch and netxray,
measured in the same process before reading).

    python benchmarks/bench_streaming.py [--gib 4.2] [--hidden 4096] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import peak_rss_mb  # benchmarks/_memory.py (the script folder is on sys.path)


def write_checkpoint(directory: Path, gib: float, hidden: int, vocab: int) -> tuple[int, int]:
    """LLM-shaped bf16 tensors (embedding, per layer q/k/v/o + MLP up/gate/down + norms, head)
    until the total reaches ``gib``; one shard per ~1 GiB. Returns (total bytes, largest)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    ffn = int(hidden * 8 / 3) // 64 * 64
    target = int(gib * 2**30)
    weight_map, shard, shard_bytes, total, largest, n_shard = {}, {}, 0, 0, 0, 0

    def flush():
        nonlocal shard, shard_bytes, n_shard
        if shard:
            n_shard += 1
            name = f"model-{n_shard:05d}.safetensors"
            save_file(shard, str(directory / name))
            weight_map.update({k: name for k in shard})
            shard, shard_bytes = {}, 0

    def add(name, t):
        nonlocal shard_bytes, total, largest
        shard[name] = t
        nbytes = t.numel() * t.element_size()
        shard_bytes += nbytes
        total += nbytes
        largest = max(largest, nbytes)
        if shard_bytes >= 2**30:
            flush()

    add("model.embed_tokens.weight", rand(vocab, hidden))
    layer = 0
    while total < target - vocab * hidden * 2:
        p = f"model.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            add(p + f"self_attn.{proj}.weight", rand(hidden, hidden))
        add(p + "mlp.gate_proj.weight", rand(ffn, hidden))
        add(p + "mlp.up_proj.weight", rand(ffn, hidden))
        add(p + "mlp.down_proj.weight", rand(hidden, ffn))
        add(p + "input_layernorm.weight", torch.ones(hidden, dtype=torch.bfloat16))
        add(p + "post_attention_layernorm.weight", torch.ones(hidden, dtype=torch.bfloat16))
        layer += 1
    add("model.norm.weight", torch.ones(hidden, dtype=torch.bfloat16))
    add("lm_head.weight", rand(vocab, hidden))
    flush()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return total, largest


def worker(mode: str, directory: str) -> None:
    from safetensors.torch import load_file

    from netxray.lenses.parameters import weight_stats
    from netxray.measures.weights import tensor_stats

    base = peak_rss_mb()  # after the imports (torch alone is ~0.9 GB resident here)
    t0 = time.perf_counter()
    if mode == "netxray":
        df = weight_stats(directory)
    else:
        state = {}
        for f in sorted(Path(directory).glob("*.safetensors")):
            state.update(load_file(str(f)))
        df = [tensor_stats(t) for t in state.values()]
    wall = time.perf_counter() - t0
    g = df.set_index("name").loc["<global>"] if mode == "netxray" else None
    print(json.dumps({"mode": mode, "wall_s": wall, "peak_rss_mb": peak_rss_mb(), "base_mb": base,
                      "global_std": None if g is None else float(g["std"])}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=4.2)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--naive", action="store_true", help="also the load-everything baseline")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    tmp_root = os.environ.get("TMPDIR", "/tmp")
    free = shutil.disk_usage(tmp_root).free
    if free < args.gib * 2**30 * 1.5:
        sys.exit(f"only {free / 2**30:.1f} GiB free under {tmp_root}: need {args.gib * 1.5:.1f}")
    directory = Path(tempfile.mkdtemp(prefix="netxray-bench-ckpt-"))
    try:
        t0 = time.perf_counter()
        total, largest = write_checkpoint(directory, args.gib, args.hidden, args.vocab)
        print(f"checkpoint: {total / 2**30:.2f} GiB bf16 in "
              f"{len(list(directory.glob('*.safetensors')))} shards, largest tensor "
              f"{largest / 2**20:.0f} MiB (written in {time.perf_counter() - t0:.0f} s)")  # fmt: skip
        print(f"{'mode':>8} {'wall s':>8} {'peak RSS MB':>12} {'above base MB':>14} "
              f"{'goal: <= largest + 300 MB':>27}")  # fmt: skip
        for mode in ("netxray", "naive") if args.naive else ("netxray",):
            res = subprocess.run([sys.executable, __file__, "--worker", mode, str(directory)],
                                 capture_output=True, text=True, check=False)  # fmt: skip
            if res.returncode != 0:
                print(f"{mode:>8} failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            above = r["peak_rss_mb"] - r["base_mb"]
            goal = largest / 2**20 + 300
            print(f"{mode:>8} {r['wall_s']:8.1f} {r['peak_rss_mb']:12.0f} {above:14.0f} "
                  f"{goal:>21.0f} {'met' if above <= goal else 'MISSED'}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
