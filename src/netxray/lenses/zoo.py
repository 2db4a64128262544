"""Zoo studies (SPEC §3.3): train a population of models over a grid, then ask whether good
networks look alike and how well weights alone predict accuracy.

Layout of a zoo directory written by :func:`train_zoo`::

    ZOO/zoo.json                      archs, dataset, grid (what was asked for)
    ZOO/models/<id>/model.safetensors  one checkpoint per model (netxray.save_checkpoint)
    ZOO/models/<id>/config.json
    ZOO/models/<id>/record.json        hyperparameters + metrics; written last

A model directory is built under ``models/.tmp-<id>-<pid>`` and renamed into place only when
complete, so a killed run never leaves a half-written model and a rerun trains only what is
missing. Engines: ``"local"`` (a process pool on this machine, the default), ``"ray"`` (a local
Ray instance, or an existing cluster via ``address``; workers need the zoo directory on a
shared filesystem) and ``"serial"`` (in-process, for debugging). The Small CNN Zoo layout of
Unterthiner et al. (2020) — ``weights.npy`` (one flat row per network), ``metrics.csv``,
``layout.csv`` — is read by :func:`analyze_zoo` too.

Example:
    >>> parse_grid("width=8,32;lr=1e-3;seed=0,1")
    {'width': [8, 32], 'lr': [0.001], 'seed': [0, 1]}
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netxray._meta import atomic_write_text, metadata
from netxray.measures import weights as W

__all__ = [
    "ENGINES",
    "Engine",
    "ZooAnalysis",
    "alpha_vs_accuracy",
    "analyze_zoo",
    "expand_grid",
    "model_features",
    "parse_grid",
    "read_small_cnn_zoo",
    "stratified_comparisons",
    "train_zoo",
    "plot_zoo",
    "with_optimal_within",
    "write_results",
]

ENGINES = ("local", "ray", "serial")
TRAIN_KEYS = ("epochs", "lr", "seed", "optimizer", "batch_size", "weight_decay", "schedule")
RECORD = "record.json"
MODELS = "models"
STAT_KEYS = ("mean", "std", "p0", "p25", "p50", "p75", "p100")


# --------------------------------------------------------------------------- grid


def _parse_value(text: str) -> Any:
    t = text.strip()
    if not t:
        raise ValueError("empty value")
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    return t


def parse_grid(spec: str | dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Parse ``"key=v1,v2;key2=v3"`` into ``{key: [values]}`` (ints, floats, bools, strings).

    Example:
        >>> parse_grid("depth=1,2;activation=relu,tanh")
        {'depth': [1, 2], 'activation': ['relu', 'tanh']}
    """
    if isinstance(spec, dict):
        return {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in spec.items()}
    if not isinstance(spec, str):
        raise TypeError(f"grid: expected a string 'key=v1,v2;key2=v3' or a dict, got {type(spec).__name__}")
    grid: dict[str, list[Any]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        if "=" not in part:
            raise ValueError(f"grid: {part!r} is not 'key=v1,v2,...' (in {spec!r})")
        key, _, values = part.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"grid: {key!r} is not a valid parameter name (in {spec!r})")
        if key in grid:
            raise ValueError(f"grid: parameter {key!r} given twice (in {spec!r})")
        try:
            grid[key] = [_parse_value(v) for v in values.split(",")]
        except ValueError as exc:
            raise ValueError(f"grid: parameter {key!r} has an empty value (in {spec!r})") from exc
    if not grid:
        raise ValueError(f"grid: no 'key=values' found in {spec!r}")
    return grid


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return re.sub(r"[^A-Za-z0-9.+-]", "", str(v))


def _model_id(arch: str, params: dict[str, Any]) -> str:
    return "-".join([arch, *(f"{k}{_fmt(v)}" for k, v in params.items())])


def expand_grid(archs: Sequence[str], grid: str | dict[str, Sequence[Any]], dataset: str = "digits") -> list[dict[str, Any]]:
    """Every combination of the grid for every arch: a list of job dicts
    ``{id, run, arch, dataset, params}``. ``run`` is the id without ``epochs``: models that differ
    only in training length share a run (same seed and data order), the group used by
    cross-validation.

    Example:
        >>> [j["id"] for j in expand_grid(["mlp"], "width=8;epochs=1,2")]
        ['mlp-width8-epochs1', 'mlp-width8-epochs2']
    """
    g = parse_grid(grid)
    if isinstance(archs, str):
        archs = [a.strip() for a in archs.split(",") if a.strip()]
    if not archs:
        raise ValueError("archs: expected at least one architecture (mlp, cnn, resnet, vit)")
    keys = list(g)
    jobs = []
    for arch in archs:
        for combo in itertools.product(*(g[k] for k in keys)):
            params = dict(zip(keys, combo, strict=True))
            run_params = {k: v for k, v in params.items() if k != "epochs"}
            jobs.append({
                "id": _model_id(arch, params), "run": _model_id(arch, run_params),
                "arch": arch, "dataset": dataset, "params": params,
            })
    ids = [j["id"] for j in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("grid: two combinations map to the same model id; use distinct values")
    return jobs


# --------------------------------------------------------------------------- engines


def _worker_init() -> None:
    # many workers share few cores: one thread each avoids oversubscription
    import torch

    torch.set_num_threads(1)


def _ray_call(fn: Callable[[Any], Any], item: Any) -> Any:
    _worker_init()
    return fn(item)


def _spawn_reruns_main() -> str | None:
    """The caller's script (or module) that a ``spawn`` worker would run again, or None.

    Mirrors ``multiprocessing.spawn``: a worker re-imports the parent's ``__main__`` from its
    module name (unless it is a package's ``__main__``) or its file (unless interactive). A
    plain script without an ``if __name__ == "__main__":`` guard would then run again in every
    worker — training, printing, starting pools of its own.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return None if name == "__main__" or name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    if path is None or os.path.basename(str(path)).lower() in ("ipython", "ipython3"):
        return None
    return str(path)


def choose_start_method() -> tuple[str, str]:
    """(start method or ``"serial"``, why) for the local process pool.

    - ``spawn`` when it re-runs nothing of the caller's (an interactive session, ``python -c``,
      ``python -m pkg``): the safest method, it shares no state with the parent;
    - otherwise ``fork`` where the platform has it (Linux) and CUDA has not been initialised:
      a forked worker starts from a copy of the parent and imports nothing again (each worker
      sets one torch thread first, so no OpenMP pool is used across the fork);
    - otherwise ``serial`` (in-process): never re-run the user's script.

    >>> method, why = choose_start_method()
    >>> method in ("spawn", "fork", "serial") and isinstance(why, str)
    True
    """
    import multiprocessing as mp

    script = _spawn_reruns_main()
    if script is None:
        return "spawn", "spawn (the caller's __main__ is not re-run by spawn)"
    cuda = "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized()
    if "fork" in mp.get_all_start_methods() and sys.platform.startswith("linux") and not cuda:
        return "fork", (f"fork, because spawn would re-run {script} in every worker "
                        "(it may lack an `if __name__ == \"__main__\":` guard)")  # fmt: skip
    return "serial", (f"serial (one process), because spawn would re-run {script} in every worker "
                      "and fork is not safe here")  # fmt: skip


class Engine:
    """Runs jobs on one engine and keeps its workers (process pool, Ray instance) alive across
    several :meth:`map` calls; use as a context manager.

    ``engine``: ``"local"`` (process pool of ``workers``; its start method from
    :func:`choose_start_method`, so a plain script without a ``__main__`` guard is never re-run
    by the workers — ``self.description`` says what was chosen), ``"ray"`` (connects to
    ``address``, else reuses a running instance, else starts a local one with ``workers``
    CPUs; only an instance it started is shut down), ``"serial"`` (in-process). Every job runs
    with one torch thread on every engine, so the same seed gives the same weights.
    """

    def __init__(self, engine: str = "local", workers: int | None = None, address: str | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r} is not supported; expected one of {ENGINES}")
        self.engine, self.address = engine, address
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self._pool: Any = None
        self._ray: Any = None
        self._ray_started = False
        self.description = engine
        if engine == "local":
            method, why = choose_start_method()
            self.description = f"local process pool of {self.workers} workers, {why}"
            if method == "serial":
                self.engine, self.description = "serial", why
            self._method = method

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._ray_started:
            self._ray.shutdown()
            self._ray_started = False

    def _start(self) -> None:
        if self.engine == "local" and self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn where it re-runs nothing of the caller's, else fork (see choose_start_method)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context(self._method),
                                             initializer=_worker_init)
            if self._method == "fork":
                # fork every worker now, before a progress bar starts a thread in this process
                self._pool.submit(int).result()
        elif self.engine == "ray" and self._ray is None:
            try:
                import ray
            except ImportError as exc:
                raise ImportError("engine 'ray' needs the optional extra: pip install 'netxray[ray]'") from exc
            self._ray = ray
            if not ray.is_initialized():
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
                self._ray_started = True

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, progress: bool = False,
            desc: str = "") -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(item))`` as jobs finish. ``fn`` must be a module-level function
        that never raises (it returns an error record instead)."""
        if not items:
            return
        self._start()
        bar = _progress(len(items), desc) if progress else None
        try:
            if self.engine == "serial":
                import torch

                # one thread, like every pool/Ray worker: float sums depend on the thread count
                threads = torch.get_num_threads()
                try:
                    torch.set_num_threads(1)
                    for i, it in enumerate(items):
                        yield i, fn(it)
                        if bar:
                            bar()
                finally:
                    torch.set_num_threads(threads)
            elif self.engine == "local":
                from concurrent.futures import as_completed

                futs = {self._pool.submit(fn, it): i for i, it in enumerate(items)}
                for fut in as_completed(futs):
                    yield futs[fut], fut.result()
                    if bar:
                        bar()
            else:
                ray = self._ray
                remote = ray.remote(num_cpus=1)(_ray_call)
                refs = {remote.remote(fn, it): i for i, it in enumerate(items)}
                pending = list(refs)
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for r in done:
                        yield refs[r], ray.get(r)
                        if bar:
                            bar()
        finally:
            if bar:
                bar.close()


class _progress:
    """A tiny rich progress bar: call it to advance, ``close()`` at the end."""

    def __init__(self, total: int, desc: str) -> None:
        from rich.progress import Progress

        self._p = Progress(transient=False)
        self._p.start()
        self._t = self._p.add_task(desc or "working", total=total)

    def __call__(self) -> None:
        self._p.advance(self._t)

    def close(self) -> None:
        self._p.stop()


# --------------------------------------------------------------------------- training


def _train_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model and commit its directory atomically; never raises."""
    t0 = time.perf_counter()
    zoo = Path(job["zoo"])
    final = zoo / MODELS / job["id"]
    tmp = zoo / MODELS / f".tmp-{job['id']}-{os.getpid()}"
    made = False
    try:
        from netxray.models import save_checkpoint
        from netxray.training import train

        params = dict(job["params"])
        train_kw = {k: params.pop(k) for k in TRAIN_KEYS if k in params}
        if job["arch"] == "vit" and "width" in params:
            params["dim"] = params.pop("width")  # the ViT's width knob is its embedding dim
        res = train(job["arch"], job["dataset"], progress=False, **train_kw, **params)
        metrics = {k: v for k, v in res.metrics.items() if k != "history"}
        # netxray's marker goes first into the model's temporary directory: a later run deletes
        # a leftover of this name only with it (own_temp_dir)
        from netxray._files import TEMP_MARKER, mark_temp_dir, own_temp_dir

        if os.path.lexists(tmp):
            if not own_temp_dir(tmp):
                raise FileExistsError(f"{tmp} is there and was not made by netxray; move it away")
            shutil.rmtree(tmp)
        tmp.mkdir()
        made = True
        mark_temp_dir(tmp)
        save_checkpoint(res.model, tmp, metrics=metrics, train_args=res.train_args)
        record = {k: job[k] for k in ("id", "run", "arch", "dataset", "params")}
        record.update(metrics=metrics, num_classes=int(res.config.get("num_classes", 0)),
                      status="ok", netxray=metadata())
        atomic_write_text(tmp / RECORD, json.dumps(record, indent=2, default=_jsonable) + "\n")
        try:
            os.rename(tmp, final)  # the commit point: the model appears complete or not at all
        except OSError:
            if (final / RECORD).exists():  # another worker finished it first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        else:
            (final / TEMP_MARKER).unlink(missing_ok=True)  # a finished model is no leftover
        return {"id": job["id"], "status": "trained", "test_acc": metrics.get("test_acc"),
                "seconds": time.perf_counter() - t0}
    except Exception as exc:
        if made:  # only the directory this job made; nothing else of that name
            shutil.rmtree(tmp, ignore_errors=True)
        return {"id": job["id"], "status": f"error: {type(exc).__name__}: {exc}", "test_acc": None,
                "seconds": time.perf_counter() - t0}


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else str(v)


def train_zoo(
    out: str | os.PathLike[str],
    archs: Sequence[str] | str,
    grid: str | dict[str, Sequence[Any]],
    *,
    dataset: str = "digits",
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every combination of ``grid`` for every arch into the zoo directory ``out``.

    Resumable: a model whose directory is complete (``record.json`` present) is skipped;
    leftovers of an interrupted run (``models/.tmp-*``) are removed first — only those netxray
    provably made (the marker :func:`netxray.report.mark_temp_dir` writes into each); any other is kept, said
    in one line on stderr and listed in ``attrs["kept"]``. A ``zoo.json`` that is not netxray's
    is refused (``FileExistsError``) before anything is written. A model that fails
    to train is a row with ``status="error: …"`` (and is retried by the next run); the rest
    go on. Returns one row per job: ``id, status (trained|exists|error…), test_acc, seconds``.

    Example (not run here: it trains):
        ``train_zoo("ZOO", "mlp", "width=8,16;lr=1e-3;epochs=1;seed=0,1", engine="serial")``
    """
    out = Path(out).resolve()
    jobs = expand_grid(archs, grid, dataset)
    spec = {"archs": sorted({j["arch"] for j in jobs}), "dataset": dataset, "grid": parse_grid(grid)}
    spec_path = out / "zoo.json"
    if os.path.lexists(spec_path):
        old = _zoo_record(spec_path)  # before anything is written
        specs = old.get("specs", [old.get("spec")] if old.get("spec") else [])
        if spec not in specs:
            specs.append(spec)
    else:
        specs = [spec]
    (out / MODELS).mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_path, json.dumps({"specs": specs, "netxray": metadata()}, indent=2) + "\n")
    from netxray._files import TEMP_MARKER, own_temp_dir

    kept = []
    for leftover in sorted((out / MODELS).glob(".tmp-*")):
        if own_temp_dir(leftover):  # an interrupted run's: proven by the marker netxray wrote into it
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            kept.append(str(leftover))
            print(f"kept {leftover}: not made by netxray (no {TEMP_MARKER} of its own); "
                  "remove it yourself if it is not yours", file=sys.stderr)
    rows, todo = [], []
    for j in jobs:
        if (out / MODELS / j["id"] / RECORD).exists():
            rows.append({"id": j["id"], "status": "exists", "test_acc": None, "seconds": 0.0})
        else:
            todo.append({**j, "zoo": str(out)})
    with Engine(engine, workers, address) as eng:
        if progress and todo:
            print(f"engine: {eng.description}", file=sys.stderr)
        for _, res in eng.map(_train_job, todo, progress=progress,
                              desc=f"training {len(todo)} models ({engine})"):
            rows.append(res)
    df = pd.DataFrame(rows, columns=["id", "status", "test_acc", "seconds"])
    df.attrs["meta"] = metadata(zoo=str(out), engine=engine, engine_detail=eng.description,
                                n_jobs=len(jobs), n_trained=len(todo))  # fmt: skip
    df.attrs["kept"] = kept
    return df


def _zoo_record(spec_path: Path) -> dict[str, Any]:
    """The ``zoo.json`` netxray wrote (a JSON object with its ``netxray`` metadata); any other
    file of that name is the user's: ``FileExistsError``, and it stays."""
    try:
        record = None if spec_path.is_symlink() else json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("netxray"), dict):
        raise FileExistsError(f"--out {spec_path.parent}: its zoo.json was not written by netxray; "
                              "move it away or choose another directory")
    return record


# --------------------------------------------------------------------------- features


def _summary(prefix: str, x: np.ndarray | None, extra: bool = False) -> dict[str, float]:
    keys = STAT_KEYS + (("skewness", "kurtosis", "near_zero_frac") if extra else ())
    if x is None or x.size == 0:
        return {f"{prefix}_{k}": float("nan") for k in keys}
    s = W.tensor_stats(x)
    return {f"{prefix}_{k}": s[k] for k in keys}


def _features_from(
    tensors: list[tuple[str, str, np.ndarray]],
    strengths: list[tuple[str, np.ndarray, np.ndarray, int]],
) -> tuple[dict[str, float], np.ndarray]:
    """Features of one model from its tensors ``(name, role, flat float64)`` in model order and
    the in-strengths ``(layer, signed, abs, fan_in)`` of its layers; also returns all weights.

    Tensor sets differ across depths and families, so instead of one block per tensor (the
    Small CNN Zoo recipe for a fixed architecture) the per-tensor statistics are taken for the
    first weight tensor, the last one, all others concatenated, all biases and all
    normalization parameters, plus the global view *(choice)*."""
    weights = [x for _, r, x in tensors if r == "weight"]
    allw = np.concatenate(weights) if weights else np.zeros(0)
    f: dict[str, float] = {
        "n_params": float(sum(x.size for _, _, x in tensors)),
        "n_nonfinite": float(sum(int((~np.isfinite(x)).sum()) for _, _, x in tensors)),
    }
    f.update(_summary("global", allw, extra=True))
    f.update(_summary("first", weights[0] if weights else None))
    f.update(_summary("last", weights[-1] if weights else None))
    f.update(_summary("hidden", np.concatenate(weights[1:-1]) if len(weights) > 2 else None))
    biases = [x for _, r, x in tensors if r == "bias"]
    f.update(_summary("bias", np.concatenate(biases) if biases else None))
    norms = [x for _, r, x in tensors if r == "norm"]
    f.update(_summary("norm", np.concatenate(norms) if norms else None))
    # strengths grow with fan-in, so use scale-free or fan-in-normalized summaries per layer
    cv, sstd, amean = [], [], []
    for _, s, a, fan_in in strengths:
        m = float(np.mean(a))
        cv.append(float(np.std(a)) / m if m > 0 else np.nan)
        sstd.append(float(np.std(s)) / math.sqrt(max(fan_in, 1)))
        amean.append(m / max(fan_in, 1))
    for name, v in (("strength_abs_cv", cv), ("strength_signed_std", sstd), ("strength_abs_mean", amean)):
        arr = np.asarray(v, dtype=np.float64)
        ok = arr[np.isfinite(arr)]
        f[f"{name}_mean"] = float(ok.mean()) if ok.size else float("nan")
        f[f"{name}_max"] = float(ok.max()) if ok.size else float("nan")
    return f, allw


ALPHA_KEYS = ("alpha_mean", "alpha_median", "alpha_min", "alpha_max", "alpha_first", "alpha_hidden",
              "alpha_last", "alpha_weighted_mean", "alpha_fit_frac")


def _spectral_features(matrices: list[tuple[str, np.ndarray]], min_tail: int = 10) -> dict[str, float]:
    """Heavy-tail (power-law α) features of one model's weight matrices, in model order.

    Per matrix (a Linear weight, a ConvNd kernel read as out × in·k…): α of the upper tail of
    the eigenvalues λ of WᵀW (:func:`netxray.measures.spectral.fit_power_law`: continuous MLE,
    x_min by minimal KS distance, a tail of ≥ ``min_tail`` eigenvalues; a matrix with fewer
    than ``min_tail`` + 1 positive eigenvalues has no α). Model features over the matrices
    with a fit: ``alpha_mean``, ``alpha_median``, ``alpha_min``, ``alpha_max``,
    ``alpha_weighted_mean`` (WeightWatcher's α̂ = α·log10 λ_max, averaged) and the per-layer
    values of the layers that align across any depth: ``alpha_first``, ``alpha_last`` (first
    and last matrix; NaN without a fit) and ``alpha_hidden`` (mean over the ones between);
    ``alpha_fit_frac``: the fraction of matrices with a fit (NaN features are imputed by the
    ridge and split on by the trees, never silently read as 0).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> f = _spectral_features([("w", rng.normal(size=(5, 4)))])
        >>> f["alpha_fit_frac"], bool(np.isnan(f["alpha_mean"]))  # 4 eigenvalues: no fit
        (0.0, True)
    """
    from netxray.measures import spectral as S

    alphas, weighted = [], []
    for _, m in matrices:
        try:
            evals = S.singular_values(m) ** 2
            fit = S.fit_power_law(evals, min_tail=min_tail)
        except Exception:  # a matrix the eigensolver refuses (non-finite): no α for it
            alphas.append(np.nan)
            weighted.append(np.nan)
            continue
        ok = fit.status == "ok" and np.isfinite(fit.alpha)
        alphas.append(fit.alpha if ok else np.nan)
        weighted.append(fit.alpha * np.log10(fit.xmax) if ok and fit.xmax > 0 else np.nan)
    a = np.asarray(alphas, dtype=np.float64)
    ok = a[np.isfinite(a)]
    w = np.asarray(weighted, dtype=np.float64)
    w = w[np.isfinite(w)]
    nan = float("nan")
    hidden = a[1:-1][np.isfinite(a[1:-1])] if a.size > 2 else np.zeros(0)
    return {
        "alpha_mean": float(ok.mean()) if ok.size else nan,
        "alpha_median": float(np.median(ok)) if ok.size else nan,
        "alpha_min": float(ok.min()) if ok.size else nan,
        "alpha_max": float(ok.max()) if ok.size else nan,
        "alpha_first": float(a[0]) if a.size else nan,
        "alpha_hidden": float(hidden.mean()) if hidden.size else nan,
        "alpha_last": float(a[-1]) if a.size else nan,
        "alpha_weighted_mean": float(w.mean()) if w.size else nan,
        "alpha_fit_frac": float(ok.size / a.size) if a.size else nan,
    }


def _module_matrices(model: Any) -> list[tuple[str, np.ndarray]]:
    """The weight matrices of a model's Linear and ConvNd layers in module order (float64,
    a kernel read as out × in·k…), the layers whose spectra the α features describe."""
    import torch
    from torch import nn

    from netxray.lenses.parameters import _CONV_TYPES
    from netxray.measures.spectral import as_weight_matrix

    out = []
    with torch.no_grad():
        for path, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, *_CONV_TYPES)):
                out.append((path, as_weight_matrix(mod.weight)))
    return out


def _module_tensors(model: Any) -> tuple[list[tuple[str, str, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray, int]]]:
    import torch
    from torch import nn

    from netxray.lenses.parameters import _CONV_TYPES, _named_params, _to_f64, parameter_role

    tensors, strengths = [], []
    with torch.no_grad():
        for full, _, mod, pname, p in _named_params(model):
            tensors.append((full, parameter_role(mod, pname), _to_f64(p)))
        for path, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                s = W.linear_strengths(mod.weight, mod.bias)
                strengths.append((path, s["in_signed"], s["in_abs"], mod.in_features))
            elif isinstance(mod, _CONV_TYPES):
                a, aa = W.conv_channel_matrix(mod.weight, groups=mod.groups)
                fan_in = int(np.prod(mod.weight.shape[1:]))
                strengths.append((path, a.sum(1), aa.sum(1), fan_in))
    return tensors, strengths


def model_features(model: Any) -> dict[str, float]:
    """Weight features of one model used by the zoo predictor (see :func:`_features_from`):
    for the global weights, the first/last/other weight tensors, biases and normalization
    parameters: mean, std, percentiles 0/25/50/75/100; node-strength summaries normalized by
    fan-in; parameter and non-finite counts; and the spectral heavy-tail features
    ``alpha_*`` (power-law α of each Linear/Conv weight's ESD, :func:`_spectral_features`).

    Example:
        >>> import torch
        >>> f = model_features(torch.nn.Linear(4, 2))
        >>> f["n_params"]
        10.0
    """
    tensors, strengths = _module_tensors(model)
    features = _features_from(tensors, strengths)[0]
    features.update(_spectral_features(_module_matrices(model)))
    return features


# --------------------------------------------------------------------------- Small CNN Zoo


def _scnn_paths(directory: Path) -> tuple[Path, Path, Path]:
    for name in ("weights.npy", "layout.csv", "metrics.csv"):
        if not (directory / name).exists():
            raise FileNotFoundError(
                f"Small CNN Zoo layout: {directory / name} is missing; expected weights.npy "
                "(one flat row per network), metrics.csv and layout.csv")
    return directory / "weights.npy", directory / "layout.csv", directory / "metrics.csv"


def _parse_shape(text: Any) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(text))
    return tuple(int(n) for n in nums)


def read_small_cnn_zoo(directory: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the index of a Small CNN Zoo directory (Unterthiner et al., 2020).

    ``metrics.csv``: one row per network, an accuracy column (``test_accuracy``, or
    ``test_acc``), hyperparameters as ``config.*`` columns, optionally ``modeldir`` (the
    training run: checkpoints of one run share it). ``layout.csv``: one row per tensor with
    ``varname``, ``start_idx``, ``end_idx`` (exclusive) and ``shape`` in TensorFlow order
    (dense kernels in × out, conv kernels kh × kw × in × out). ``weights.npy``: (networks × P).
    Returns ``(metrics, layout)`` after checking that they agree with the weights' shape.

    Example (fixture written by the tests): ``metrics, layout = read_small_cnn_zoo("zoo_dir")``
    """
    directory = Path(directory)
    wpath, lpath, mpath = _scnn_paths(directory)
    weights = np.load(wpath, mmap_mode="r")
    layout = pd.read_csv(lpath)
    metrics = pd.read_csv(mpath)
    need = {"varname", "start_idx", "end_idx", "shape"}
    if not need <= set(layout.columns):
        raise ValueError(f"{lpath}: expected columns {sorted(need)}, got {list(layout.columns)}")
    acc = "test_accuracy" if "test_accuracy" in metrics.columns else "test_acc"
    if acc not in metrics.columns:
        raise ValueError(f"{mpath}: expected a 'test_accuracy' column, got {list(metrics.columns)}")
    if weights.ndim != 2 or weights.shape[0] != len(metrics):
        raise ValueError(f"{wpath}: expected {len(metrics)} rows (one per metrics.csv row), got shape {weights.shape}")
    for r in layout.itertuples():
        shape = _parse_shape(r.shape)
        if int(np.prod(shape)) != r.end_idx - r.start_idx or r.end_idx > weights.shape[1]:
            raise ValueError(f"{lpath}: tensor {r.varname!r} slice [{r.start_idx}, {r.end_idx}) does not fit shape {shape} or the {weights.shape[1]} columns")
    return metrics, layout


def _scnn_tensors(directory: str, row: int) -> tuple[list[tuple[str, str, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray, int]]]:
    weights = np.load(Path(directory) / "weights.npy", mmap_mode="r")
    layout = pd.read_csv(Path(directory) / "layout.csv")
    flat = np.asarray(weights[row], dtype=np.float64)
    tensors, strengths = [], []
    for r in layout.itertuples():
        x = flat[int(r.start_idx):int(r.end_idx)]
        shape = _parse_shape(r.shape)
        name = str(r.varname)
        low = name.lower()
        role = "bias" if "bias" in low else "norm" if ("batch_norm" in low or "gamma" in low or "beta" in low) else "weight"
        tensors.append((name, role, x))
        if role == "weight" and len(shape) in (2, 4):
            k = x.reshape(shape)
            # TF layout: dense (in, out); conv (kh, kw, in, out) → channel graph A[o, c]
            a = k.T if k.ndim == 2 else np.moveaxis(k, (3, 2), (0, 1))
            A, AA = W.conv_channel_matrix(a) if a.ndim > 2 else (a, np.abs(a))
            fan_in = int(np.prod(shape[:-1]))
            strengths.append((name, A.sum(1), AA.sum(1), fan_in))
    return tensors, strengths


def _scnn_matrices(directory: str, row: int) -> list[tuple[str, np.ndarray]]:
    """The dense and conv kernels of one Small CNN Zoo network as out × in(·kh·kw) matrices."""
    weights = np.load(Path(directory) / "weights.npy", mmap_mode="r")
    layout = pd.read_csv(Path(directory) / "layout.csv")
    flat = np.asarray(weights[row], dtype=np.float64)
    out = []
    for r in layout.itertuples():
        name, shape = str(r.varname), _parse_shape(r.shape)
        low = name.lower()
        if "bias" in low or "batch_norm" in low or "gamma" in low or "beta" in low or len(shape) not in (2, 4):
            continue
        k = flat[int(r.start_idx):int(r.end_idx)].reshape(shape)
        # TF layout: dense (in, out) → out × in; conv (kh, kw, in, out) → out × (kh·kw·in)
        out.append((name, k.T if k.ndim == 2 else k.reshape(-1, shape[-1]).T))
    return out


# --------------------------------------------------------------------------- analysis jobs


def _feature_job(item: dict[str, Any]) -> dict[str, Any]:
    """Features (pass 1) or the global-weight histogram on given edges (pass 2); never raises."""
    try:
        if item["kind"] == "scnn":
            tensors, strengths = _scnn_tensors(item["dir"], item["row"])
            matrices = lambda: _scnn_matrices(item["dir"], item["row"])  # noqa: E731
        else:
            from netxray.models.checkpoint import load

            model = load(item["path"])
            tensors, strengths = _module_tensors(model)
            matrices = lambda: _module_matrices(model)  # noqa: E731
        if item.get("edges") is not None:
            parts = [x for _, r, x in tensors if r == "weight"]
            allw = np.concatenate(parts) if parts else np.zeros(0)
            dens, n_out = W.histogram_density(allw, np.asarray(item["edges"]))
            return {"status": "ok", "hist": dens, "n_outside": n_out}
        features = _features_from(tensors, strengths)[0]
        features.update(_spectral_features(matrices()))
        return {"status": "ok", "features": features}
    except Exception as exc:
        return {"status": f"error: {type(exc).__name__}: {exc}"}


def _zoo_items(zoo: Path) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Analysis items and the per-model table (hyperparameters, accuracy) of a zoo directory."""
    if (zoo / "weights.npy").exists() and (zoo / "layout.csv").exists():
        metrics, _ = read_small_cnn_zoo(zoo)
        acc = "test_accuracy" if "test_accuracy" in metrics.columns else "test_acc"
        hp = [c for c in metrics.columns if c.startswith("config.")]
        run = metrics["modeldir"].astype(str) if "modeldir" in metrics.columns else pd.Series(
            [f"row{i}" for i in range(len(metrics))])
        ids = [f"{r}@{s}" for r, s in zip(run, metrics["step"], strict=True)] if "step" in metrics.columns else [f"net{i}" for i in range(len(metrics))]
        table = pd.DataFrame({
            "id": ids, "run": run.to_numpy(),
            "arch": metrics["config.dnn_architecture"].astype(str) if "config.dnn_architecture" in metrics.columns else "cnn",
            "dataset": metrics["config.dataset"].astype(str) if "config.dataset" in metrics.columns else "small_cnn_zoo",
            "test_acc": metrics[acc].astype(float).to_numpy(),
            "num_classes": 10, "status": "ok",
        })
        for c in hp:
            table["hp_" + c[len("config."):]] = metrics[c].to_numpy()
        items = [{"kind": "scnn", "dir": str(zoo), "row": i} for i in range(len(metrics))]
        return items, table
    models_dir = zoo / MODELS
    if not models_dir.is_dir():
        raise FileNotFoundError(
            f"zoo: {zoo} is neither a netxray zoo (no {MODELS}/ directory) nor a Small CNN Zoo "
            "(weights.npy + layout.csv + metrics.csv)")
    rows, items = [], []
    for d in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"id": d.name, "run": d.name, "arch": "", "dataset": "",
                               "test_acc": np.nan, "num_classes": np.nan, "status": "ok"}
        try:
            rec = json.loads((d / RECORD).read_text())
            row.update(run=rec["run"], arch=rec["arch"], dataset=rec["dataset"],
                       test_acc=float(rec["metrics"]["test_acc"]),
                       num_classes=rec.get("num_classes") or np.nan)
            for k, v in rec["params"].items():
                row["hp_" + k] = v
            row["train_diverged"] = bool(rec["metrics"].get("diverged", False))
        except FileNotFoundError:
            row["status"] = f"error: {RECORD} missing (an incomplete model directory)"
        except Exception as exc:
            row["status"] = f"error: unreadable {RECORD}: {type(exc).__name__}: {exc}"
        rows.append(row)
        items.append({"kind": "checkpoint", "path": str(d)})
    if not rows:
        raise ValueError(f"zoo: {models_dir} holds no model directories")
    return items, pd.DataFrame(rows)


# --------------------------------------------------------------------------- analysis


@dataclass
class ZooAnalysis:
    """Result of :func:`analyze_zoo`.

    ``models``: one row per model (hyperparameters ``hp_*``, ``test_acc``, ``status``, ``class``,
    features ``f_*``, out-of-fold predictions ``pred_*``); ``comparisons``: spread of each
    statistic per class (MAD, Brown–Forsythe) and distribution distances (KS, Jeffreys) within
    and between classes, per family; ``predictors``: R² and Kendall τ of each predictor;
    ``histograms``: family → (edges, {id: density}); ``summary``: the headline numbers."""

    models: pd.DataFrame
    comparisons: pd.DataFrame
    predictors: pd.DataFrame
    histograms: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


COMPARE_STATS = (
    "global_mean", "global_std", "global_skewness", "global_kurtosis", "global_p0", "global_p25",
    "global_p50", "global_p75", "global_p100", "global_near_zero_frac", "bias_mean", "bias_std",
    "strength_abs_cv_mean", "strength_signed_std_mean", "strength_abs_mean_mean",
)


def _classify(df: pd.DataFrame, optimal_within: float, chance_margin: float) -> pd.Series:
    cls = pd.Series("suboptimal", index=df.index, dtype=object)
    ok = df["status"] == "ok"
    cls[~ok] = "error"
    chance = 1.0 / df["num_classes"].astype(float).where(df["num_classes"].astype(float) > 0, 10.0)
    div = ok & ((df["f_n_nonfinite"] > 0) | (df["test_acc"] <= chance + chance_margin) | ~np.isfinite(df["test_acc"]))
    if "train_diverged" in df.columns:
        div |= ok & df["train_diverged"].fillna(False).astype(bool)
    cls[div] = "diverged"
    live = ok & ~div
    for _, idx in df[live].groupby(["dataset", "arch"]).groups.items():
        best = df.loc[idx, "test_acc"].max()
        good = df.loc[idx, "test_acc"] >= best - optimal_within
        cls[good[good].index] = "optimal"
    return cls


def _comparisons(df: pd.DataFrame, hists: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> pd.DataFrame:
    rows = []
    for (dataset, arch), g in df[df["class"].isin(["optimal", "suboptimal"])].groupby(["dataset", "arch"]):
        opt, sub = g[g["class"] == "optimal"], g[g["class"] == "suboptimal"]
        for stat in COMPARE_STATS:
            col = "f_" + stat
            if col not in g:
                continue
            a, b = opt[col].to_numpy(float), sub[col].to_numpy(float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            row = {"dataset": dataset, "arch": arch, "measure": "spread", "statistic": stat,
                   "n_optimal": a.size, "n_suboptimal": b.size,
                   "mad_optimal": W.mad(a) if a.size else np.nan, "mad_suboptimal": W.mad(b) if b.size else np.nan}
            row["mad_ratio_sub_over_opt"] = row["mad_suboptimal"] / row["mad_optimal"] if row["mad_optimal"] > 0 else np.nan
            if a.size >= 2 and b.size >= 2 and (np.ptp(a) > 0 or np.ptp(b) > 0):
                row["bf_F"], row["bf_p"] = W.brown_forsythe(a, b)
            else:
                row["bf_F"] = row["bf_p"] = np.nan
            rows.append(row)
        # distribution distances of the global weight histograms, within and between classes
        if arch in hists:
            edges, h = hists[arch]
            ids_o = [i for i in opt["id"] if i in h]
            ids_s = [i for i in sub["id"] if i in h]
            dists: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
                "jeffreys": lambda p, q, e=edges: W.jeffreys_divergence(p, q, e),
                "ks_binned": lambda p, q, e=edges: W.binned_ks(p, q, e),
            }
            for dist_name, fn in dists.items():
                def mean_pair(xs: list[str], ys: list[str] | None, fn: Callable[..., float] = fn,
                              h: dict[str, np.ndarray] = h) -> float:
                    pairs = itertools.combinations(xs, 2) if ys is None else itertools.product(xs, ys)
                    vals = [fn(h[p], h[q]) for p, q in pairs]
                    return float(np.mean(vals)) if vals else float("nan")
                rows.append({
                    "dataset": dataset, "arch": arch, "measure": "distribution", "statistic": dist_name,
                    "n_optimal": len(ids_o), "n_suboptimal": len(ids_s),
                    "within_optimal": mean_pair(ids_o, None), "within_suboptimal": mean_pair(ids_s, None),
                    "between": mean_pair(ids_o, ids_s),
                })
    return pd.DataFrame(rows)


def _hp_matrix(df: pd.DataFrame) -> pd.DataFrame:
    cols = {}
    for c in df.columns:
        if not c.startswith("hp_") or c == "hp_seed":
            continue
        s = df[c]
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().all():
            cols[c] = np.log10(num) if c in ("hp_lr", "hp_learning_rate") and (num > 0).all() else num
        else:
            for v in sorted(map(str, s.dropna().unique())):
                cols[f"{c}={v}"] = (s.astype(str) == v).astype(float)
    for v in sorted(df["arch"].astype(str).unique()):
        cols[f"arch={v}"] = (df["arch"].astype(str) == v).astype(float)
    return pd.DataFrame(cols, index=df.index)


def _is_alpha(col: str) -> bool:
    return col.startswith("f_alpha_")


def _weights_matrix(df: pd.DataFrame, alpha: bool = False) -> pd.DataFrame:
    """Weight-statistics and strength features (plus the α features when ``alpha``)."""
    X = df[[c for c in df.columns if c.startswith("f_") and c not in ("f_n_params", "f_n_nonfinite")
            and (alpha or not _is_alpha(c))]].astype(float)
    # the family is readable from any checkpoint's tensor shapes; it is not a training choice
    for v in sorted(df["arch"].astype(str).unique()):
        X[f"arch={v}"] = (df["arch"].astype(str) == v).astype(float)
    return X


def _predict(df: pd.DataFrame, seed: int, n_splits: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy.stats import kendalltau
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    live = df[df["class"].isin(["optimal", "suboptimal"])]
    preds = pd.DataFrame(index=df.index)
    rows = []
    groups = live["run"].astype(str).to_numpy()
    k = min(n_splits, len(set(groups)))
    y = live["test_acc"].to_numpy(float)
    if k < 2 or len(live) < 10:
        return preds, pd.DataFrame([{"predictor": "-", "features": "-", "n": len(live), "r2": np.nan,
                                     "kendall_tau": np.nan, "status": f"skipped: {len(live)} models in {len(set(groups))} runs; need >= 10 models in >= 2 runs"}])
    Xw, Xh = _weights_matrix(live), _hp_matrix(live)
    # α alone: does the heavy-tail exponent of the weight spectra predict accuracy by itself?
    Xa = live[[c for c in live.columns if _is_alpha(c)]].astype(float)
    Xwa = _weights_matrix(live, alpha=True)

    def gbt() -> Any:
        return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                             min_samples_leaf=5, random_state=seed)

    def ridge() -> Any:
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             RidgeCV(alphas=np.logspace(-3, 3, 13)))

    specs = [("gbt", "weights", gbt, Xw), ("ridge", "weights", ridge, Xw),
             ("gbt", "hparams", gbt, Xh), ("ridge", "hparams", ridge, Xh),
             ("gbt", "alpha", gbt, Xa), ("ridge", "alpha", ridge, Xa),
             ("gbt", "weights+alpha", gbt, Xwa), ("ridge", "weights+alpha", ridge, Xwa)]
    cv = GroupKFold(n_splits=k)
    from threadpoolctl import threadpool_limits

    # a few hundred rows: OpenMP threads only add overhead (and stall badly on a shared CPU)
    with threadpool_limits(limits=1):
        return _fit_specs(specs, cv, y, groups, live, preds, rows, r2_score, kendalltau)


def _fit_specs(specs: list[Any], cv: Any, y: np.ndarray, groups: np.ndarray, live: pd.DataFrame,
               preds: pd.DataFrame, rows: list[dict[str, Any]], r2_score: Any, kendalltau: Any,
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    k = cv.get_n_splits()
    for name, feats, make, X in specs:
        oof = np.full(len(live), np.nan)
        Xa = X.to_numpy(float)
        try:
            if Xa.shape[1] == 0:
                raise ValueError("no features")
            for tr, te in cv.split(Xa, y, groups):
                # a feature absent from every training model (e.g. hidden-layer stats when all
                # are depth 1) carries nothing to learn from: drop it for this fold
                keep = ~np.isnan(Xa[tr]).all(axis=0)
                if not keep.any():
                    raise ValueError("no feature has a value in the training models (α: no layer has "
                                     "enough eigenvalues for a power-law fit)")
                m = make()
                m.fit(Xa[tr][:, keep], y[tr])
                oof[te] = m.predict(Xa[te][:, keep])
            tau = kendalltau(y, oof)
            rows.append({"predictor": name, "features": feats, "n": len(live), "n_features": Xa.shape[1],
                         "folds": k, "r2": float(r2_score(y, oof)), "kendall_tau": float(tau.statistic),
                         "status": "ok"})
        except Exception as exc:
            rows.append({"predictor": name, "features": feats, "n": len(live), "n_features": Xa.shape[1],
                         "folds": k, "r2": np.nan, "kendall_tau": np.nan, "status": f"error: {exc}"})
        preds.loc[live.index, f"pred_{name}_{feats}"] = oof
    return preds, pd.DataFrame(rows)


def analyze_zoo(
    zoo: str | os.PathLike[str],
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    bins: int = 100,
    optimal_within: float = 0.01,
    chance_margin: float = 0.02,
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> ZooAnalysis:
    """Analyse a zoo (a directory from :func:`train_zoo`, or a Small CNN Zoo directory).

    1. Per-model features (:func:`model_features`), computed on ``engine``. A model that cannot
       be read (corrupted checkpoint, missing record) is a row with ``status="error: …"`` and
       is left out of everything after, never a crash.
    2. Classes within each (dataset, family), SPEC §3.3: ``diverged`` = non-finite weights,
       training flagged diverged, or accuracy ≤ 1/num_classes + ``chance_margin``;
       ``optimal`` = accuracy ≥ best − ``optimal_within``; ``suboptimal`` = the rest.
    3. Comparisons per family: for each statistic the median absolute deviation within
       optimal vs suboptimal and a Brown–Forsythe test of equal spread; for the global weight
       histograms (``bins`` shared bins per family spanning the non-diverged models' range)
       the mean pairwise Jeffreys divergence and binned KS distance within each class and
       between them.
    4. Accuracy predictors on non-diverged models: gradient-boosted trees and ridge on weight
       features, and both on hyperparameters only; out-of-fold predictions with GroupKFold by
       training run (``run``); R² and Kendall τ.

    Example (not run here): ``res = analyze_zoo("ZOO"); res.predictors``
    """
    zoo = Path(zoo)
    if not zoo.exists():
        raise FileNotFoundError(f"zoo: {zoo} does not exist")
    t0 = time.perf_counter()
    items, df = _zoo_items(zoo)
    # one engine (one pool / Ray instance) for both passes: worker start-up is paid once
    with Engine(engine, workers, address) as eng:
        engine_detail = eng.description
        if progress:
            print(f"engine: {engine_detail}", file=sys.stderr)
        feats: list[dict[str, float] | None] = [None] * len(items)
        for i, res in eng.map(_feature_job, items, progress=progress,
                              desc=f"features of {len(items)} models ({engine})"):
            if res["status"] == "ok":
                feats[i] = res["features"]
            elif df.at[i, "status"] == "ok":
                df.at[i, "status"] = res["status"]
        t_features = time.perf_counter() - t0
        F = pd.DataFrame([f or {} for f in feats], index=df.index).add_prefix("f_")
        if "f_n_nonfinite" not in F:
            F["f_n_nonfinite"] = np.nan
        df = pd.concat([df, F], axis=1)
        df["class"] = _classify(df, optimal_within, chance_margin)
        # pass 2: global histograms on bin edges shared within each family
        hists: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        hist_items, hist_keys = [], []
        for arch, g in df[df["class"].isin(["optimal", "suboptimal"])].groupby("arch"):
            lo, hi = float(g["f_global_p0"].min()), float(g["f_global_p100"].max())
            edges = W.shared_bin_edges(range=(lo, hi), bins=bins)
            hists[str(arch)] = (edges, {})
            for i in g.index:
                hist_items.append({**items[i], "edges": edges})
                hist_keys.append((str(arch), df.at[i, "id"]))
        for j, res in eng.map(_feature_job, hist_items, progress=progress, desc="shared-bin histograms"):
            if res["status"] == "ok":
                arch, mid = hist_keys[j]
                hists[arch][1][mid] = res["hist"]
    t_hist = time.perf_counter() - t0 - t_features
    preds, predictors = _predict(df, seed, n_splits)
    t_pred = time.perf_counter() - t0 - t_features - t_hist
    df = pd.concat([df, preds], axis=1)
    comparisons = _comparisons(df, hists)
    summary = _summarize(df, comparisons, predictors)
    summary.update(seconds_total=time.perf_counter() - t0, seconds_features=t_features,
                   seconds_histograms=t_hist, seconds_predictors=t_pred, engine=engine,
                   engine_detail=engine_detail, optimal_within=optimal_within)
    meta = metadata(zoo=str(zoo), engine=engine, engine_detail=engine_detail, seed=seed, n=len(df), bins=bins,
                    optimal_within=optimal_within, chance_margin=chance_margin, n_splits=n_splits)
    for t in (df, comparisons, predictors):
        t.attrs["meta"] = meta
    return ZooAnalysis(df, comparisons, predictors, hists, summary)


def with_optimal_within(res: ZooAnalysis, optimal_within: float) -> ZooAnalysis:
    """The same analysis with another optimal threshold (accuracy ≥ best − ``optimal_within``):
    classes, comparisons and summary are recomputed from the stored features and histograms;
    the predictors (fitted on optimal ∪ suboptimal, which does not change) are kept.

    Example (not run here): ``with_optimal_within(res, 0.05).summary["families"]``
    """
    meta = dict(res.models.attrs.get("meta", {}))
    df = res.models.copy()
    live = df["class"].isin(["optimal", "suboptimal"])
    for _, idx in df[live].groupby(["dataset", "arch"]).groups.items():
        best = df.loc[idx, "test_acc"].max()
        df.loc[idx, "class"] = np.where(df.loc[idx, "test_acc"] >= best - optimal_within, "optimal", "suboptimal")
    comparisons = _comparisons(df, res.histograms)
    summary = {**res.summary, **_summarize(df, comparisons, res.predictors), "optimal_within": optimal_within}
    meta["optimal_within"] = optimal_within
    for t in (df, comparisons):
        t.attrs["meta"] = meta
    return ZooAnalysis(df, comparisons, res.predictors, res.histograms, summary)


def stratified_comparisons(res: ZooAnalysis, by: Sequence[str] = ("lr", "epochs"), *,
                           min_per_class: int = 2) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Optimal vs suboptimal comparisons *within* cells of equal hyperparameters ``by``.

    A zoo's classes are usually confounded with its grid (the optimal models share a learning
    rate and training length, and weight statistics move with both), so "optimal models look
    alike" may only say "equal hyperparameters look alike". Here the same spread and
    distribution comparisons are made inside each (dataset, family, *by) cell holding at least
    ``min_per_class`` optimal and suboptimal models. Returns the comparisons (with the cell's
    ``hp_*`` values) and a per-family summary pooled over cells (statistics compared, fraction
    with the larger suboptimal MAD, median MAD ratio, mean within-class Jeffreys).

    Example (not run here): ``comp, summ = stratified_comparisons(res, by=("lr",))``
    """
    df = res.models
    cols = [f"hp_{b}" for b in by]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"by: {missing} are not hyperparameter columns of this zoo; have "
                         f"{sorted(c for c in df.columns if c.startswith('hp_'))}")
    live = df[df["class"].isin(["optimal", "suboptimal"])]
    parts = []
    for key, g in live.groupby(["dataset", "arch", *cols]):
        counts = g["class"].value_counts()
        if counts.get("optimal", 0) < min_per_class or counts.get("suboptimal", 0) < min_per_class:
            continue
        comp = _comparisons(g, res.histograms)
        for c, v in zip(cols, key[2:], strict=True):
            comp[c] = v
        parts.append(comp)
    comp = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    summary: dict[str, Any] = {}
    if not comp.empty:
        for arch, g in comp.groupby("arch"):
            sp = g[g["measure"] == "spread"]
            ratio = sp["mad_ratio_sub_over_opt"].to_numpy(float)
            ratio = ratio[np.isfinite(ratio)]
            jd = g[(g["measure"] == "distribution") & (g["statistic"] == "jeffreys")]
            summary[str(arch)] = {
                "cells": int(len(jd)) if len(jd) else int(sp.groupby(cols).ngroups),
                "stats_compared": int(ratio.size),
                "frac_stats_sub_spread_larger": float(np.mean(ratio > 1)) if ratio.size else float("nan"),
                "median_mad_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
                "jeffreys_within_optimal": float(jd["within_optimal"].mean()) if len(jd) else float("nan"),
                "jeffreys_within_suboptimal": float(jd["within_suboptimal"].mean()) if len(jd) else float("nan"),
            }
    return comp, summary


def alpha_vs_accuracy(df: pd.DataFrame, features: Sequence[str] = ("alpha_mean", "alpha_median",
                      "alpha_weighted_mean")) -> pd.DataFrame:
    """Rank correlation of each α feature with test accuracy, per family and pooled.

    Over the models that trained (classes optimal and suboptimal; diverged models would decide
    any correlation by themselves) with a finite feature: Spearman ρ (and its p-value) and
    Kendall τ. One row per (family, feature); family ``"all"`` pools the families (when
    there are several).

    Example:
        >>> d = pd.DataFrame({"arch": ["m"] * 4, "class": ["optimal"] * 4,
        ...                   "test_acc": [0.9, 0.8, 0.7, 0.6], "f_alpha_mean": [2.0, 3.0, 4.0, 5.0]})
        >>> alpha_vs_accuracy(d, ["alpha_mean"])[["arch", "n", "spearman"]].values.tolist()
        [['m', 4, -1.0]]
    """
    from scipy.stats import kendalltau, spearmanr

    live = df[df["class"].isin(["optimal", "suboptimal"])]
    rows = []
    groups = [(str(a), g) for a, g in live.groupby("arch")]
    if len(groups) > 1:
        groups.append(("all", live))
    for arch, g in groups:
        for feat in features:
            col = "f_" + feat
            if col not in g:
                continue
            x, y = g[col].to_numpy(float), g["test_acc"].to_numpy(float)
            m = np.isfinite(x) & np.isfinite(y)
            row = {"arch": arch, "feature": feat, "n": int(m.sum()), "spearman": np.nan,
                   "spearman_p": np.nan, "kendall_tau": np.nan}
            if m.sum() >= 3 and np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0:
                sr = spearmanr(x[m], y[m])
                row.update(spearman=float(sr.statistic), spearman_p=float(sr.pvalue),
                           kendall_tau=float(kendalltau(x[m], y[m]).statistic))
            rows.append(row)
    return pd.DataFrame(rows, columns=["arch", "feature", "n", "spearman", "spearman_p", "kendall_tau"])


def _summarize(df: pd.DataFrame, comp: pd.DataFrame, pred: pd.DataFrame) -> dict[str, Any]:
    s: dict[str, Any] = {"n_models": int(len(df)), "classes": df["class"].value_counts().to_dict(),
                         "errors": df.loc[df["status"] != "ok", ["id", "status"]].values.tolist()}
    per_family = {}
    if not comp.empty:
        for arch, g in comp.groupby("arch"):
            sp = g[g["measure"] == "spread"]
            ratio = sp["mad_ratio_sub_over_opt"].to_numpy(float)
            ratio = ratio[np.isfinite(ratio)]
            dist = g[(g["measure"] == "distribution") & (g["statistic"] == "jeffreys")]
            fam = {
                "n_optimal": int(sp["n_optimal"].max()) if len(sp) else 0,
                "n_suboptimal": int(sp["n_suboptimal"].max()) if len(sp) else 0,
                "stats_compared": int(ratio.size),
                "frac_stats_sub_spread_larger": float(np.mean(ratio > 1)) if ratio.size else float("nan"),
                "median_mad_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
                "bf_significant_sub_larger": int(((sp["bf_p"] < 0.05) & (sp["mad_ratio_sub_over_opt"] > 1)).sum()),
                "bf_significant_opt_larger": int(((sp["bf_p"] < 0.05) & (sp["mad_ratio_sub_over_opt"] < 1)).sum()),
            }
            if len(dist):
                d = dist.iloc[0]
                fam.update(jeffreys_within_optimal=float(d["within_optimal"]),
                           jeffreys_within_suboptimal=float(d["within_suboptimal"]),
                           jeffreys_between=float(d["between"]))
            # "good networks look alike": optimal models tighter on most statistics and in distribution
            fam["claim_holds"] = bool(
                ratio.size and np.mean(ratio > 1) > 0.5
                and fam.get("jeffreys_within_optimal", np.inf) < fam.get("jeffreys_within_suboptimal", -np.inf)
            )
            per_family[str(arch)] = fam
    s["families"] = per_family
    s["predictors"] = pred.to_dict(orient="records")
    s["alpha_vs_accuracy"] = alpha_vs_accuracy(df).to_dict(orient="records") if "class" in df else []
    return s


# --------------------------------------------------------------------------- plots & output


def plot_zoo(res: ZooAnalysis, directory: str | os.PathLike[str]) -> list[Path]:
    """Write the zoo plots to ``directory``: statistic distributions by class
    (``stats_by_class.png``), global weight histograms of optimal vs suboptimal models per
    family (``histograms_<family>.png``), the mean power-law α of the weight spectra against
    accuracy (``alpha_vs_accuracy.png``) and predicted vs measured accuracy
    (``predicted_vs_measured.png``). Returns the paths written.

    They replace only files netxray provably wrote there (:func:`netxray.report.write_owned_files`):
    with a user's file of one of these names, nothing is written and ``FileExistsError`` names it."""
    from matplotlib.figure import Figure

    from netxray._files import write_owned_files

    out = Path(directory)
    files: dict[str, bytes] = {}
    df = res.models
    live = df[df["class"].isin(["optimal", "suboptimal", "diverged"])]
    stats = ["global_std", "global_kurtosis", "global_p25", "global_p75", "strength_abs_cv_mean", "bias_std"]
    archs = sorted(live["arch"].astype(str).unique())
    colors = {"optimal": "tab:green", "suboptimal": "tab:orange", "diverged": "tab:red"}
    if archs:
        fig = Figure(figsize=(3.2 * len(stats), 2.6 * len(archs)), layout="constrained")
        axes = fig.subplots(len(archs), len(stats), squeeze=False)
        for r, arch in enumerate(archs):
            g = live[live["arch"].astype(str) == arch]
            for c, st in enumerate(stats):
                ax = axes[r, c]
                for k, cls in enumerate(("optimal", "suboptimal", "diverged")):
                    v = g.loc[g["class"] == cls, "f_" + st].to_numpy(float)
                    v = v[np.isfinite(v)]
                    if v.size:
                        jitter = np.random.default_rng(k).uniform(-0.15, 0.15, v.size)
                        ax.scatter(k + jitter, v, s=8, color=colors[cls], alpha=0.7)
                ax.set_xticks([0, 1, 2], ["opt", "sub", "div"])
                ax.set_title(f"{arch}: {st}", fontsize=8)
        p = out / "stats_by_class.png"
        files[p.name] = _png(fig)
    for arch, (edges, h) in res.histograms.items():
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax = fig.subplots()
        cls_of = dict(zip(df["id"], df["class"], strict=True))
        for mid, dens in h.items():
            cls = cls_of.get(mid, "suboptimal")
            ax.stairs(dens, edges, color=colors.get(cls, "gray"), alpha=0.35 if cls == "suboptimal" else 0.8, lw=0.8)
        ax.set(title=f"{arch}: global weight densities (green optimal, orange suboptimal)", xlabel="weight",
               ylabel="density", yscale="symlog")
        p = out / f"histograms_{re.sub(r'[^A-Za-z0-9_.-]', '_', arch)}.png"
        files[p.name] = _png(fig)
    alpha = _plot_alpha(res, colors)
    if alpha is not None:
        files["alpha_vs_accuracy.png"] = _png(alpha)
    pcols = [c for c in df.columns if c.startswith("pred_")]
    if pcols:
        fig = Figure(figsize=(3.3 * len(pcols), 3.3), layout="constrained")
        axes = fig.subplots(1, len(pcols), squeeze=False)
        for ax, c in zip(axes[0], pcols, strict=True):
            m = df[c].notna()
            ax.scatter(df.loc[m, "test_acc"], df.loc[m, c], s=8, c=[colors.get(k, "gray") for k in df.loc[m, "class"]])
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ax.set(title=c[5:], xlabel="measured accuracy", ylabel="predicted")
        p = out / "predicted_vs_measured.png"
        files[p.name] = _png(fig)
    write_owned_files(out, files, "--plot")
    return [out / name for name in files]


PLOT_NAMES = ("stats_by_class.png", "alpha_vs_accuracy.png", "predicted_vs_measured.png")  # and histograms_<family>


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _plot_alpha(res: ZooAnalysis, colors: dict[str, str]) -> Any:
    """``alpha_vs_accuracy.png``: mean power-law α of each model's weight spectra against its
    accuracy, one panel per family, coloured by class, Spearman ρ in the title."""
    from matplotlib.figure import Figure

    df = res.models
    if "f_alpha_mean" not in df:
        return None
    live = df[df["class"].isin(["optimal", "suboptimal", "diverged"]) & np.isfinite(df["f_alpha_mean"].astype(float))]
    archs = sorted(live["arch"].astype(str).unique())
    if not archs:
        return None
    corr = alpha_vs_accuracy(df, ["alpha_mean"]).set_index("arch")
    fig = Figure(figsize=(3.6 * len(archs), 3.3), layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        g = live[live["arch"].astype(str) == arch]
        for cls in ("optimal", "suboptimal", "diverged"):
            h = g[g["class"] == cls]
            ax.scatter(h["f_alpha_mean"], h["test_acc"], s=10, color=colors[cls], alpha=0.75, label=cls)
        rho = corr["spearman"].get(arch, np.nan) if arch in corr.index else np.nan
        n = int(corr["n"].get(arch, 0)) if arch in corr.index else 0
        ax.set(title=f"{arch}: Spearman rho = {rho:.2f} (n = {n})", xlabel="mean power-law alpha over layers",
               ylabel="test accuracy")
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=7)
    return fig


def result_side_files(out: str | os.PathLike[str]) -> list[str]:
    """The names of the side files :func:`write_results` writes beside ``out``."""
    stem = Path(out).with_suffix("").name
    return [f"{stem}.comparisons.csv", f"{stem}.predictors.csv", f"{stem}.summary.json"]


def write_results(res: ZooAnalysis, out: str | os.PathLike[str], *, own_out: bool = False) -> list[Path]:
    """Write ``out`` (Parquet, one row per model; CSV if the name ends in .csv) and, beside it,
    ``<stem>.comparisons.csv``, ``<stem>.predictors.csv`` and ``<stem>.summary.json``.

    The side files replace only files netxray provably wrote (hash in the folder's
    ``.netxray-files.json``, :func:`netxray.report.check_owned_files`): a user's file of that
    name is kept and ``FileExistsError`` names it, before anything is written. ``own_out``: ``out``
    is a name netxray chose (``zoo demo``), not the user's, and is checked the same way.
    """
    from netxray._files import check_owned_files, record_owned_files

    out = Path(out)
    side = [*([out.name] if own_out else []), *result_side_files(out)]
    check_owned_files(out.parent, side, beside=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = res.models.copy()
    for c in df.columns:  # mixed-type hyperparameter columns → strings so Parquet can store them
        if df[c].dtype == object and not df[c].map(lambda v: isinstance(v, str) or v is None).all():
            df[c] = df[c].astype(str)
    if out.suffix == ".csv":
        atomic_write_text(out, df.to_csv(index=False))
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        from netxray._meta import atomic_write_bytes

        atomic_write_bytes(out, buf.getvalue())
    paths = [out]
    for name, table in (("comparisons", res.comparisons), ("predictors", res.predictors)):
        p = out.with_name(f"{out.with_suffix('').name}.{name}.csv")
        atomic_write_text(p, table.to_csv(index=False))
        paths.append(p)
    p = out.with_name(f"{out.with_suffix('').name}.summary.json")
    atomic_write_text(p, json.dumps({"summary": res.summary, "meta": res.models.attrs.get("meta", {})},
                                    indent=2, default=_jsonable) + "\n")
    paths.append(p)
    record_owned_files(out.parent, side)
    return paths
