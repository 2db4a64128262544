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
``nonlinearity_signature`` as ``scan`` runs it (companions and the null baseline on), in one
process; prints the ratio (goal, issue 12: ≤ 3× the forward), where the signature's time goes
(capture, scoring, null baseline, companions, model hash) and the null baseline's rotation timed
both ways at the widest site. ``--bert-layers`` shrinks it for a quick check.

``--vit-b16``: torchvision's ViT-B/16 (random init, 86 M parameters), n = ``--vit-n`` (64)
random 224×224 images: the plain forward against ``scan`` with all four lenses, in one process;
prints scan / forward, the scoring floor (affinity + null + companions of the signature's sites:
work on the captured features that no faster capture removes), scan / (3 × forward + floor)
(goal, issue 12: ≤ 1), the per-lens seconds and the same phase split.

Run these with ``nice`` on a shared machine; the ratios are taken in one process, so they hold
under load better than the absolute seconds do.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch

from _memory import peak_rss_mb  # benchmarks/_memory.py (the script folder is on sys.path)


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


class PhaseTimer:
    """Wall time spent inside chosen library functions, by phase (module attributes wrapped and
    restored). The non-linearity lens's pieces: ``capture`` (the hooked forward passes and the
    on-the-fly pooling), ``scoring`` (the affinity score of each site), ``null baseline`` (the
    rotated copy and its score), ``companions`` (CKA, R², sparsity, entropy), ``model hash``.
    Seconds are CPU seconds of this process (``time.process_time``): with one thread they are the
    work done, whatever else the machine is running."""

    def __init__(self) -> None:
        from collections import defaultdict

        self.spent: dict[str, float] = defaultdict(float)
        self._undo: list = []
        self._null_next = False

    def _wrap(self, module, attr: str, phase) -> None:
        inner = getattr(module, attr)

        def timed(*a, **k):
            t = time.process_time()
            try:
                return inner(*a, **k)
            finally:
                self.spent[phase() if callable(phase) else phase] += time.process_time() - t

        setattr(module, attr, timed)
        self._undo.append((module, attr, inner))

    def __enter__(self) -> PhaseTimer:
        import netxray._meta as meta
        import netxray.capture as capture
        import netxray.lenses.nonlinearity as nl

        def null_then_score() -> str:  # the affinity call right after a rotated copy is the null's
            phase = "null baseline" if self._null_next else "scoring"
            self._null_next = False
            return phase

        def rotation() -> str:
            self._null_next = True
            return "null baseline"

        self._wrap(capture, "collect", "capture")
        self._wrap(nl, "affinity_score", null_then_score)
        self._wrap(nl, "rotated_copy", rotation)
        for f in ("sparsity", "histogram_entropy", "linear_cka", "linear_r2"):
            self._wrap(nl, f, "companions")
        # the lenses import model_hash by name; it hashes through the module's state_dict_hash
        self._wrap(meta, "state_dict_hash", "model hash")
        return self

    def __exit__(self, *exc) -> None:
        for module, attr, inner in reversed(self._undo):
            setattr(module, attr, inner)

    def lines(self, total: float) -> str:
        parts = [f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in self.spent.items()]
        rest = total - sum(self.spent.values())
        return ", ".join(parts + [f"other {rest:.1f} s ({100 * rest / total:.0f} %)"])


class _Clock:
    """Wall and CPU seconds of a block (CPU: this process, all its threads)."""

    def __enter__(self) -> _Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _null_rotation_side_by_side(n: int, d: int) -> str:
    """The null baseline's rotated copy at one (n, d): sample-space path vs the full d×d rotation."""
    import numpy as np

    from netxray.lenses.nonlinearity import random_rotation, rotated_copy

    x = np.random.default_rng(0).normal(size=(n, d))
    with _Clock() as fast:
        rotated_copy(x, 1)
    with _Clock() as full:
        _ = x @ random_rotation(d, 1)
    return (f"null rotation at n = {n}, d = {d}: sample-space rotated_copy {fast.cpu:.2f} CPU s vs "
            f"x @ (d×d Haar rotation) {full.cpu:.2f} CPU s ({full.cpu / max(fast.cpu, 1e-9):.0f}x)")  # fmt: skip


def _forward(model, batches) -> _Clock:
    with torch.no_grad(), _Clock() as clock:
        for b in batches:
            model(**b) if isinstance(b, dict) else model(b)
    return clock


def bench_bert(layers: int, n_seq: int, seq_len: int, batch: int) -> None:
    from transformers import BertConfig, BertModel

    from netxray.lenses.nonlinearity import nonlinearity_signature

    torch.manual_seed(0)
    cfg = BertConfig(num_hidden_layers=layers, hidden_size=768, intermediate_size=3072,
                     num_attention_heads=12, vocab_size=30522)  # fmt: skip
    model = BertModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (n_seq, seq_len), generator=g)
    batches = [{"input_ids": ids[i:i + batch], "attention_mask": torch.ones_like(ids[i:i + batch])}
               for i in range(0, n_seq, batch)]  # fmt: skip
    fwd = _forward(model, batches)
    with PhaseTimer() as timer, _Clock() as sig_t:
        # what scan runs: companions on (the default) and the null baseline
        sig = nonlinearity_signature(model, batches, n_seq, null_baseline=True, batch_size=batch)
    d = int(sig["d"].max()) if len(sig) else 0
    print(f"BERT {layers} layers (d = 768, FFN 3072), {n_seq} seqs x {seq_len} tokens, batch {batch}, "
          f"1 thread, one process:\n"
          f"  plain forward {fwd.cpu:.1f} CPU s ({fwd.wall:.1f} s wall); signature (companions + null "
          f"baseline) {sig_t.cpu:.1f} CPU s ({sig_t.wall:.1f} s wall) = {sig_t.cpu / fwd.cpu:.2f}x the forward "
          f"in CPU time, {sig_t.wall / fwd.wall:.2f}x in wall time (goal <= 3x); {len(sig)} sites (d up to {d}), "
          f"statuses {sig['status'].value_counts().to_dict()}\n"
          f"  where the signature's CPU time goes: {timer.lines(sig_t.cpu)}\n"
          f"  {_null_rotation_side_by_side(n_seq, d)}", flush=True)  # fmt: skip


def bench_vit_b16(n: int, batch: int) -> None:
    """torchvision ViT-B/16 (random init) ``scan`` at n samples vs its plain forward pass."""
    import torchvision

    from netxray._meta import model_hash
    from netxray.report import scan

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 224, 224, generator=g)
    y = torch.arange(n) % 10
    fwd = _forward(model, [x[i:i + batch] for i in range(0, n, batch)])
    peak_forward = peak_rss_mb()  # the model, the inputs and one plain forward pass
    with _Clock() as hash_t:
        model_hash(model)
    from netxray.report import runners

    lens_cpu: dict[str, float] = {}
    originals = dict(runners._RUNNERS)

    def cpu_timed(name, run):
        def wrapped(*a, **k):
            t = time.process_time()
            try:
                return run(*a, **k)
            finally:
                lens_cpu[name] = time.process_time() - t

        return wrapped

    runners._RUNNERS.update({k: cpu_timed(k, v) for k, v in originals.items()})
    try:
        with PhaseTimer() as timer, _Clock() as scan_t:
            report = scan(model, (x, y), n_samples=n, batch_size=batch, progress=False)
    finally:
        runners._RUNNERS.update(originals)
    floor = timer.spent["scoring"] + timer.spent["null baseline"] + timer.spent["companions"]
    lenses = ", ".join(f"{k} {lens_cpu.get(k, float('nan')):.1f} CPU s = {lens_cpu.get(k, 0) / fwd.cpu:.2f}x "
                       f"forward ({r.status})" for k, r in report.results.items())  # fmt: skip
    print(f"ViT-B/16 (torchvision, random init, 86 M parameters), n = {n}, batch {batch}, 1 thread, one process:\n"
          f"  plain forward {fwd.cpu:.1f} CPU s ({fwd.wall:.1f} s wall); scan (4 lenses) {scan_t.cpu:.1f} CPU s "
          f"({scan_t.wall:.1f} s wall) = {scan_t.cpu / fwd.cpu:.2f}x the forward in CPU time "
          f"({scan_t.wall / fwd.wall:.2f}x wall); scoring floor (affinity + null + companions of the signature's "
          f"sites) {floor:.1f} CPU s; scan / (3 x forward + floor) = {scan_t.cpu / (3 * fwd.cpu + floor):.2f} "
          f"in CPU time (goal <= 1)\n"
          f"  per lens: {lenses}; report layer {scan_t.cpu - sum(lens_cpu.values()):.1f} CPU s\n"
          f"  inside the scan (CPU s): {timer.lines(scan_t.cpu)}; one model hash {hash_t.cpu:.1f} CPU s\n"
          f"  peak RSS: {peak_forward:.0f} MB after the plain forward, {peak_rss_mb():.0f} MB after the scan", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="mlp,cnn,resnet,vit")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bert", action="store_true", help="only the BERT-base-size signature check")
    ap.add_argument("--bert-layers", type=int, default=12)
    ap.add_argument("--bert-seqs", type=int, default=512)
    ap.add_argument("--vit-b16", action="store_true", help="only the ViT-B/16 scan vs forward check")
    ap.add_argument("--vit-n", type=int, default=64)
    args = ap.parse_args()
    from netxray._threads import set_threads

    set_threads(args.threads)
    if args.bert:
        bench_bert(args.bert_layers, args.bert_seqs, 64, 64)
    if args.vit_b16:
        bench_vit_b16(args.vit_n, min(args.vit_n, 256))  # scan's default batch: 256
    if args.bert or args.vit_b16:
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
