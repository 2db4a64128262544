"""Zoo lens, part 1 — training the zoo.

Hyperparameter grids (:func:`parse_grid`, :func:`expand_grid`), the engines that run jobs
(:class:`Engine`: serial, local process pool, ray) and :func:`train_zoo`. Split out of
:mod:`netxray.lenses.zoo`, which re-exports every name.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netxray._meta import atomic_write_text, metadata

ENGINES = ("local", "ray", "serial")


TRAIN_KEYS = ("epochs", "lr", "seed", "optimizer", "batch_size", "weight_decay", "schedule")


RECORD = "record.json"


MODELS = "models"


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
