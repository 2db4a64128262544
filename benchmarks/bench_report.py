"""Benchmark: what the product layer costs on top of the lenses, and the size of the report.

Side by side in one run, on built-in models trained briefly on digits (n = 359 test samples):
(a) the lens functions called directly with the same options as ``scan`` (signature with the null
baseline, modularity curve + redundancy, weight stats + node strengths, symmetry group + covering
bounds); (b) ``netxray.scan`` (the same lenses plus headline figures and every plot rendered to
PNG); (c) ``Report.save`` (HTML, results.json, CSV and Parquet). Printed per model: the times
(best of ``--repeats``, interleaved), the ratio scan/lenses, save time, the HTML size and the peak
traced Python memory of a scan.

    python benchmarks/bench_report.py [--archs mlp,cnn,resnet,vit] [--repeats 2] [--threads 1]

Goal (issue 7): the report layer (plots, HTML) costs at most 2× the lenses themselves, and a
one-model report stays under 1 MB.

``--bert``: a BERT-base-size encoder built from its config (random init: 12 layers, d = 768,
FFN 3072), 512 sequences × 64 tokens: the plain forward over the samples against
``nonlinearity_signature`` with the null baseline, and ``scan`` (non-linearity + parameters)
over the same samples; prints the ratios (goal, issue 12: signature ≤ 3× the forward) and where
the signature's time goes (capture vs scoring). ``--bert-layers`` shrinks it for a quick check.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch


def lenses_direct(model, splits, seed: int) -> None:
    from netxray.lenses.modularity import modularity_curve, redundant_layers
    from netxray.lenses.nonlinearity import nonlinearity_signature
    from netxray.lenses.parameters import node_strengths, strength_fluctuation, weight_stats
    from netxray.lenses.symmetry import covering_bounds, symmetry_group

    nonlinearity_signature(model, splits, 2048, seed=seed, null_baseline=True)
    n = int(0.8 * len(splits.test))  # what scan uses when the data has fewer than N = 500 samples
    redundant_layers(modularity_curve(model, splits, "auto", n=n, k=3, repeats=5, seed=seed))
    strength_fluctuation(node_strengths(model))
    weight_stats(model)
    symmetry_group(model)
    try:
        covering_bounds(model)
    except ValueError:  # not an MLP: scan records a note instead
        pass


def bench_bert(layers: int, n_seq: int, seq_len: int, batch: int) -> None:
    import time as _time

    from transformers import BertConfig, BertModel

    from netxray.lenses.nonlinearity import nonlinearity_signature
    from netxray.measures import affinity as aff

    torch.manual_seed(0)
    cfg = BertConfig(num_hidden_layers=layers, hidden_size=768, intermediate_size=3072,
                     num_attention_heads=12, vocab_size=30522)  # fmt: skip
    model = BertModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (n_seq, seq_len), generator=g)
    batches = [{"input_ids": ids[i:i + batch], "attention_mask": torch.ones_like(ids[i:i + batch])}
               for i in range(0, n_seq, batch)]  # fmt: skip
    t0 = _time.perf_counter()
    with torch.no_grad():
        for b in batches:
            model(**b)
    t_fwd = _time.perf_counter() - t0
    spent = []
    inner = aff.affinity_score

    def timed_score(*a, **k):
        t = _time.perf_counter()
        out = inner(*a, **k)
        spent.append(_time.perf_counter() - t)
        return out

    import netxray.lenses.nonlinearity as nl

    nl.affinity_score = timed_score
    try:
        t0 = _time.perf_counter()
        sig = nonlinearity_signature(model, batches, n_seq, null_baseline=True, batch_size=batch)
        t_sig = _time.perf_counter() - t0
    finally:
        nl.affinity_score = inner
    d = int(sig["d"].max()) if len(sig) else 0
    print(f"BERT {layers} layers, {n_seq} seqs x {seq_len} tokens, 1 thread: forward {t_fwd:.1f} s, "
          f"signature + null {t_sig:.1f} s = {t_sig / t_fwd:.2f}x the forward (goal <= 3x); "
          f"{len(sig)} sites (d up to {d}), affinity + null scoring {sum(spent):.1f} s, "
          f"capture + companions {t_sig - sum(spent):.1f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="mlp,cnn,resnet,vit")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bert", action="store_true", help="only the BERT-base-size signature check")
    ap.add_argument("--bert-layers", type=int, default=12)
    ap.add_argument("--bert-seqs", type=int, default=512)
    args = ap.parse_args()
    from netxray._threads import set_threads

    set_threads(args.threads)
    if args.bert:
        bench_bert(args.bert_layers, args.bert_seqs, 64, 64)
        return

    import warnings

    from netxray.data import load_data
    from netxray.report import scan
    from netxray.training import train

    warnings.filterwarnings("ignore")
    splits = load_data("digits")
    print(f"{'model':>8} {'lenses s':>9} {'scan s':>8} {'ratio':>6} {'save s':>7} {'html KB':>8} {'peak MB':>8}")
    for arch in args.archs.split(","):
        model = train(arch, splits, epochs=2, progress=False).model
        t_lens, t_scan = [], []
        for _ in range(args.repeats):  # interleaved so both see the same machine load
            t0 = time.perf_counter()
            lenses_direct(model, splits, 0)
            t_lens.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = scan(model, splits, seed=0, progress=False)
            t_scan.append(time.perf_counter() - t0)
        tracemalloc.start()
        scan(model, splits, seed=0, progress=False)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            index = report.save(d)
            t_save = time.perf_counter() - t0
            size = Path(index).stat().st_size / 1024
        a, b = min(t_lens), min(t_scan)
        print(f"{arch:>8} {a:9.2f} {b:8.2f} {b / a:6.2f} {t_save:7.2f} {size:8.0f} {peak:8.1f}")


if __name__ == "__main__":
    main()
