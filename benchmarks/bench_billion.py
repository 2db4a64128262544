"""Benchmark: a 1.1 B-parameter Llama through every lens on one CPU machine (issue 23).

The model has TinyLlama's shape (hidden 2048, 22 layers, intermediate 5632, 32 heads, 4 key/value
heads, vocab 32 000, untied LM head: 1 100 048 384 parameters), random init from the config in
bfloat16, saved with ``save_pretrained`` as sharded safetensors and read back with
``netxray.load("hf:DIR")`` — in bfloat16, never a float32 copy. Each lens then runs in its own
process (``netxray.scan(model, data, lenses=[lens])``) so that its peak memory is its own:

- the data: ``--sequences`` × ``--tokens`` random token ids (seeded), labels alternating 0/1;
- the signature's activation sites (the SiLU of each MLP) have d = 5632 features, so the
  positions estimator needs more than 5632 tokens: it runs on ``--signature-sequences`` ×
  ``--tokens`` (default 96 × 64 = 6144) with ``n_samples`` = all of them; on 16 × 64 = 1024 tokens
  it says ``no_result`` and asks for 89 sequences (printed too with ``--signature-sequences 16``).

Printed per lens: status, CPU and wall seconds, peak RSS, and the memory beyond the model itself
(peak minus the RSS once every weight has been read), per parameter. Goal: every lens ok, the
peak of each ≤ 12 GiB.

    python benchmarks/bench_billion.py [--layers 22] [--sequences 16] [--tokens 64]
        [--signature-sequences 96] [--dir DIR] [--lenses nonlinearity,modularity,...]

``--layers 2`` runs the same shape with 2 decoder layers (219 M parameters) in minutes. The
model directory (default: a folder under the system's temp directory named by the shape) is
reused when it exists; delete it to rebuild.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_rss_mb  # noqa: E402

LENSES = ("parameters", "modularity", "symmetry", "nonlinearity")
SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=32, num_key_value_heads=4,
             vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(directory: Path, layers: int, seed: int = 0) -> None:
    """A random-init Llama of TinyLlama's shape in bfloat16, saved as sharded safetensors."""
    import torch
    import transformers

    cfg = transformers.LlamaConfig(num_hidden_layers=layers, **SHAPE)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="500MB")


def worker(directory: Path, lens: str, sequences: int, tokens: int) -> dict:
    import torch

    import netxray

    t0, w0 = time.process_time(), time.time()
    model = netxray.load(f"hf:{directory}")
    load = {"cpu_s": time.process_time() - t0, "wall_s": time.time() - w0, "peak_mb": peak_rss_mb()}
    with torch.no_grad():  # read every weight once: the model itself is then in the RSS
        for p in model.parameters():
            p.view(-1)[:: max(1, 4096 // p.element_size())].sum()
    base = rss_mb()
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (sequences, tokens), generator=g)
    labels = torch.arange(sequences) % 2
    t1, w1 = time.process_time(), time.time()
    report = netxray.scan(model, (ids, labels), lenses=[lens], n_samples=sequences * tokens, batch_size=8,
                          progress=False)  # fmt: skip
    res = report.results[lens]
    peak = peak_rss_mb()
    return {
        "lens": lens, "status": res.status, "reason": res.reason, "dtype": str(next(model.parameters()).dtype),
        "params": n_params, "sequences": sequences, "tokens": tokens,
        "cpu_s": time.process_time() - t1, "wall_s": time.time() - w1,
        "base_mb": base, "peak_mb": peak, "load": load,
        "summary": {k: v for k, v in report.summary.get(lens, {}).items() if isinstance(v, (int, float, str))},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--sequences", type=int, default=16)
    ap.add_argument("--signature-sequences", type=int, default=96)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--lenses", default=",".join(LENSES))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    directory = args.dir or Path(tempfile.gettempdir()) / f"netxray-bench-llama-{args.layers}l-bf16"
    if args.worker:
        print(json.dumps(worker(directory, args.worker, args.sequences, args.tokens)))
        return
    if not (directory / "config.json").is_file():
        t = time.time()
        build(directory, args.layers)
        print(f"built and saved {directory} in {time.time() - t:.0f} s")
    files = sorted(p.name for p in directory.glob("*.safetensors"))
    print(f"model: Llama, TinyLlama's shape with {args.layers} layers, bfloat16, {len(files)} safetensors shards")
    rows = []
    for lens in [s.strip() for s in args.lenses.split(",") if s.strip()]:
        seqs = args.signature_sequences if lens == "nonlinearity" else args.sequences
        cmd = [sys.executable, __file__, "--worker", lens, "--dir", str(directory), "--layers", str(args.layers),
               "--sequences", str(seqs), "--tokens", str(args.tokens)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = (out.stdout.strip().splitlines() or [""])[-1]
        if out.returncode or not line.startswith("{"):
            print(f"{lens}: worker failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
            continue
        r = json.loads(line)
        rows.append(r)
        extra = (r["peak_mb"] - r["base_mb"]) * 2**20
        print(f"{lens:13s} {r['status']:10s} {r['sequences']}×{r['tokens']} tokens  cpu {r['cpu_s']:7.1f} s  "
              f"wall {r['wall_s']:7.1f} s  peak {r['peak_mb'] / 1024:5.2f} GiB  after load {r['base_mb'] / 1024:4.2f} GiB  "
              f"beyond the model {extra / 2**30:5.2f} GiB = {extra / r['params']:4.1f} B/param", flush=True)  # fmt: skip
        if r["status"] != "ok":
            print(f"{'':13s} reason: {r['reason']}")
        head = {k: v for k, v in r["summary"].items() if k not in ("status", "reason")}
        print(f"{'':13s} " + "; ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                        for k, v in list(head.items())[:8]))  # fmt: skip
    if rows:
        r0 = rows[0]
        print(f"\nparameters: {r0['params']:,} in {r0['dtype']}; load (hf:DIR, sharded): cpu {r0['load']['cpu_s']:.1f} s, "
              f"peak {r0['load']['peak_mb'] / 1024:.2f} GiB for {r0['params'] * 2 / 2**30:.2f} GiB of weights")  # fmt: skip
        worst = max(r["peak_mb"] for r in rows) / 1024
        ok = sum(r["status"] == "ok" for r in rows)
        print(f"lenses ok: {ok} of {len(rows)}; highest peak {worst:.2f} GiB (goal ≤ 12 GiB); "
              f"CPU time in all {sum(r['cpu_s'] for r in rows):.0f} s")


if __name__ == "__main__":
    main()
