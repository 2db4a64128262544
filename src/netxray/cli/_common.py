"""Small pieces every command shares: one error style, loading checkpoints and data, tables."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer

# Exit statuses of every command: 0 done; 1 an error (one ``error:`` line, nothing written);
# 2 a usage error (click's); 3 ``scan``/``compare`` wrote the report but some lens failed
# (``--allow-partial`` makes that 0).
EXIT_ERROR = 1
EXIT_PARTIAL = 3

MODEL_SOURCES_HELP = (
    "a netxray checkpoint (directory or .safetensors), PATH.py:FACTORY (your own code), "
    "torchvision:NAME, timm:NAME (random init, or --weights FILE) or hf:DIR (a local Hugging "
    "Face model directory)"
)
DATA_HELP = (
    "Data: digits | mnist1d | blobs[:...] | npz:PATH | idx:DIR | cifar10:DIR | imagefolder:DIR "
    "(one sub-folder per class) | text:FILE.csv|.jsonl (text,label columns; tokenized by the "
    "hf:DIR model's tokenizer or --tokenizer) | hfdataset:DIR (datasets.save_to_disk). Measured: "
    "the whole data set when it has no split of its own (a folder without train/ and test/, a "
    "text file), else its test split; --split chooses."
)

# data-source and device options shared by the commands that run a model on data
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (cuda when a GPU is there). Default: where the model is (cpu).")
WEIGHTS = typer.Option(None, "--weights", help="State dict for a PATH.py:FACTORY, torchvision: or timm: model: .safetensors, or .pt/.pth/.bin read with torch.load(weights_only=True).")
TASK = typer.Option(None, "--task", help="hf:DIR models: the head (sequence-classification, image-classification, token-classification, base, ...). Default: the config's architectures.")
IMAGE_SIZE = typer.Option(None, "--image-size", help="imagefolder/hfdataset images: resize to SIZE x SIZE (default: the model's declared size, else the first image's, at most 224).")
NORMALIZE = typer.Option(None, "--normalize", help="Image normalization: imagenet, cifar10, half, none, or MEAN,MEAN,MEAN/STD,STD,STD. Default: what the model declares (timm, torchvision, HF), else none.")
TOKENIZER = typer.Option(None, "--tokenizer", help="text/hfdataset text: the tokenizer directory (hf:DIR). Default: the hf:DIR model's own.")
TEXT_COLUMN = typer.Option(None, "--text-column", help="text/hfdataset: the column holding the text (default: text).")
LABEL_COLUMN = typer.Option(None, "--label-column", help="text/hfdataset: the column holding the labels (default: label).")
INPUT_COLUMNS = typer.Option(None, "--input-columns", help="hfdataset: comma-separated numeric columns fed to the model (one: positional; several: by keyword).")
SAMPLES = typer.Option("positions", "--samples", help="Signature estimator (SPEC §1.2): positions (default: every pixel of a conv map, every real token — never padding — is a sample of d = channels; determined at a few hundred inputs) or pooled (the paper's pipeline: one pooled row per input; under-determined when inputs <= channels).")
SPLIT = typer.Option("auto", "--split", help="Which samples the lenses measure: auto (the whole data set when it has no split of its own — an image folder without train/ and test/, a text file, an npz without x_test — else its test split; the built-in sets' test split is the one `netxray train` holds out), test, train or all.")
MAX_LENGTH = typer.Option(None, "--max-length", help="text: truncate to this many tokens (default: 128, or the model's position limit when smaller).")
DEFAULT_MAX_LENGTH = 128


@dataclass(frozen=True)
class DataOptions:
    """The model and data-source options every command that runs a model on data shares
    (``--weights``, ``--task``, ``--device``, ``--image-size``, ``--normalize``, ``--tokenizer``,
    ``--text-column``, ``--label-column``, ``--input-columns``, ``--max-length``, ``--split``),
    handed to the command as one object by :func:`data_options`."""

    weights: Path | None = None
    task: str | None = None
    device: str | None = None
    image_size: int | None = None
    normalize: str | None = None
    tokenizer: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    input_columns: str | None = None
    max_length: int | None = None
    split: str = "auto"

    def load_model(self, source: Path | str, *, weights: bool = True) -> Any:
        """:func:`load_checkpoint` with ``--weights`` (unless ``weights=False``) and ``--task``."""
        return load_checkpoint(source, weights=self.weights if weights else None, task=self.task)

    def load_data(self, spec: str, seed: int, model: Any = None) -> Any:
        """:func:`load_cli_data` with every data-source option."""
        return load_cli_data(
            spec, seed, model=model, image_size=self.image_size, normalize=self.normalize,
            tokenizer=self.tokenizer, text_column=self.text_column, label_column=self.label_column,
            input_columns=self.input_columns, max_length=self.max_length, split=self.split,
        )  # fmt: skip


# (name, annotation, typer option): the order they appear in every command's --help
_MODEL_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("task", str | None, TASK), ("device", str | None, DEVICE),
)
_DATA_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("image_size", int | None, IMAGE_SIZE), ("normalize", str | None, NORMALIZE),
    ("tokenizer", str | None, TOKENIZER), ("text_column", str | None, TEXT_COLUMN),
    ("label_column", str | None, LABEL_COLUMN), ("input_columns", str | None, INPUT_COLUMNS),
    ("max_length", int | None, MAX_LENGTH), ("split", str, SPLIT),
)


def data_options(*, weights: Any = WEIGHTS, split: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the model and data-source options once for a command that runs a model on data.

    The command takes one parameter ``opts: DataOptions`` where the shared options belong in its
    ``--help``; the decorator puts ``--weights`` (``weights``: its typer option, or None for a
    command without it), ``--task``, ``--device`` and the data-source options there in the
    signature typer reads, and hands the command their values as one :class:`DataOptions`.
    ``split=False`` leaves ``--split`` out (a command with its own train/test protocol: ``prune``).
    Apply it below ``@app.command(...)``.
    """
    shared = (("weights", Path | None, weights),) if weights is not None else ()
    shared += _MODEL_OPTIONS + tuple(o for o in _DATA_OPTIONS if split or o[0] != "split")
    names = [name for name, _, _ in shared]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        params = [p.replace(annotation=_evaluated(p.annotation, func)) for p in sig.parameters.values()]
        at = [p.name for p in params].index("opts")
        added = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=ann)
                 for name, ann, option in shared]  # fmt: skip
        params = params[:at] + added + params[at + 1:]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            opts = DataOptions(**{name: kwargs.pop(name) for name in names})
            return func(**kwargs, opts=opts)

        command.__signature__ = sig.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _evaluated(annotation: Any, func: Callable[..., Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) as the type it names in the
    function's module, for typer; left as it is when it names something local (the ``opts``
    parameter's, which typer never sees)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(func, "__globals__", {}))  # noqa: S307 - our own source
    except Exception:  # noqa: BLE001
        return annotation


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 1 (no traceback)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=EXIT_ERROR)


def load_checkpoint(path: Path | str, *, weights: Path | None = None, task: str | None = None) -> Any:
    """The model named by a source string (:mod:`netxray.models.sources`): a netxray checkpoint,
    ``PATH.py:FACTORY``, ``torchvision:NAME``, ``timm:NAME`` or ``hf:DIR``; or a clear CLI error."""
    from netxray.models.sources import load, parse_source

    spec = str(path)
    kind = "model"
    try:
        kind, _ = parse_source(spec)
        return load(spec, weights=weights, task=task)
    except (OSError, ValueError, KeyError) as exc:
        what = "checkpoint" if kind == "checkpoint" else "model"
        fail(f"cannot load {what} {spec!r}: {exc}")


def cli_device(device: str | None, model: Any = None) -> Any:
    """``--device`` as a torch device, or one ``error:`` line (e.g. cuda without a GPU); the model
    (which the CLI loaded itself) is moved there. None keeps the model where it is."""
    from netxray.capture.inputs import resolve_device

    if device is None:
        return None
    try:
        dev = resolve_device(device, model)
    except ValueError as exc:
        fail(f"--device {device}: " + str(exc).replace(f"device {device!r}: ", "", 1))
    if model is not None:
        model.to(dev)
    return dev


def load_cli_data(
    spec: str,
    seed: int,
    *,
    model: Any = None,
    image_size: int | None = None,
    normalize: str | None = None,
    tokenizer: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    input_columns: str | None = None,
    max_length: int | None = None,
    split: str = "auto",
) -> Any:
    """``--data`` as DataSplits, or a clear error. The model supplies defaults: the image size and
    normalization it declares, and (for ``hf:DIR``) its tokenizer for text data. ``split``: which
    samples the lenses measure (:meth:`netxray.data.DataSplits.measured`)."""
    from netxray.data import load_data

    name = spec.strip().partition(":")[0].lower()
    options: dict[str, Any] = {
        "image_size": image_size, "normalize": normalize, "text_column": text_column,
        "label_column": label_column, "max_length": max_length,
        "input_columns": [c.strip() for c in input_columns.split(",") if c.strip()] if input_columns else None,
        "tokenizer": tokenizer,
    }  # fmt: skip
    if name in ("text", "hfdataset") and tokenizer is None and getattr(model, "netxray_hf_dir", None):
        options["tokenizer"] = model.netxray_hf_dir
    limit = position_limit(model)
    if name in ("text", "hfdataset") and limit is not None:
        if max_length is None:
            options["max_length"] = min(DEFAULT_MAX_LENGTH, limit)
        elif max_length > limit:
            fail(f"--max-length {max_length}: the model has {limit} positions (its config's "
                 f"max_position_embeddings); give --max-length {limit} or less")
    if name in ("imagefolder", "hfdataset"):
        options["preprocessing"] = getattr(model, "netxray_preprocessing", None)
        shape = (getattr(model, "netxray_config", None) or {}).get("input_shape")
        if options["preprocessing"] is None and isinstance(shape, list) and len(shape) == 3:
            options["preprocessing"] = {"size": int(shape[-1]), "source": "the model's input_shape"}
    from netxray.data.dataset import SPLITS

    if split not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    try:
        splits = load_data(spec, seed=seed, **{k: v for k, v in options.items() if v is not None})
    except (OSError, ValueError) as exc:
        fail(f"--data {spec!r}: {exc}")
    return splits.with_split(split) if split != "auto" else splits


def position_limit(model: Any) -> int | None:
    """The most tokens a Hugging Face model takes (``max_position_embeddings``, less the offset
    RoBERTa-style models reserve for padding), or None when the model declares no limit."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return None
    if "roberta" in str(getattr(config, "model_type", "")) or getattr(config, "model_type", "") in ("camembert", "longformer"):
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after padding_idx
    return max(limit, 1)


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to torch's and BLAS's pools (:func:`netxray._threads.set_threads`);
    None keeps the libraries' defaults."""
    if threads is None:
        return
    if threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    from netxray._threads import set_threads as _set

    _set(threads)


def write_table(df: Any, path: Path, extra: dict[str, Any] | None = None, *, beside: Path | None = None,
                option: str = "--out") -> None:
    """Write ``df`` as CSV and its metadata (``attrs``: meta, summary, segments) beside it.

    ``curve.csv`` gets ``curve.csv.meta.json``; both are written atomically. The ``.meta.json``
    is a side file: it replaces only a file netxray provably wrote (:func:`check_beside`), and its
    hash is recorded so that a rerun may replace it. ``beside``: ``path`` itself is a side file of
    the file the user named (``curve.redundant.csv`` beside ``curve.csv``), checked the same way.
    """
    from netxray._meta import atomic_write_text
    from netxray.report import record_owned_files

    meta_path = path.with_name(path.name + ".meta.json")
    side = [meta_path.name] if beside is None else [path.name, meta_path.name]
    check_beside(path if beside is None else beside, side, option, folder=path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))
    meta = {**df.attrs.get("meta", {}), **(extra or {})}
    for key in ("summary", "segments"):
        if key in df.attrs:
            meta[key] = df.attrs[key]
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str))
    record_owned_files(path.parent, side)


def table_side_files(path: Path) -> list[str]:
    """The side file :func:`write_table` writes beside ``path``: its ``.meta.json``."""
    return [path.name + ".meta.json"]


def check_beside(path: Path, names: list[str], option: str = "--out", *, folder: Path | None = None) -> None:
    """Fail with one line when a side file ``names`` that netxray writes beside ``path`` (the file
    the user named with ``option``) in its folder would overwrite a file netxray cannot prove it
    wrote (its hash in the folder's ``.netxray-files.json``): that file is the user's and stays.
    Call it before the work; record what was written with :func:`netxray.report.record_owned_files`.
    """
    from netxray.report import check_owned_files

    try:
        check_owned_files(path.parent if folder is None else folder, names, option, beside=path)
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))


def check_fits(model: Any, splits: Any, spec: str, label: str = "the model") -> None:
    """Fail early with one clear line when the model cannot run on the data's samples.

    The probe goes through the capture (eval mode, no grad, the model's device and dtype, every
    module's flag restored), exactly as the lenses will call the model.
    """
    from netxray._meta import check_materialized
    from netxray.capture import collect
    from netxray.capture.inputs import _Indexable, _shape_of, example_batch, resolve_samples

    try:
        check_materialized(model, label)
    except ValueError as exc:
        fail(str(exc))

    try:
        x = example_batch(resolve_samples(splits), 2)
    except Exception as exc:
        fail(f"--data {spec!r}: cannot read its samples: {type(exc).__name__}: {exc}")
    try:
        collect(model, _Indexable(x, None), activations=False, n_samples=None)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        how = ("model(**batch) with the batch's keyword tensors" if isinstance(x, dict)
               else "model(*inputs)" if isinstance(x, tuple)
               else "model(x) with x a float tensor of shape (batch, *sample shape)")  # fmt: skip
        fail(
            f"{label} cannot run on --data {spec!r} samples of shape "
            f"{list(x.shape[1:]) if hasattr(x, 'shape') else _shape_of(x)} "
            f"({getattr(splits, 'num_classes', '?')} classes): {type(exc).__name__}: {first}. "
            f"netxray calls {how}; the model's forward must accept that"
        )


def check_out(path: Path, *, directory: bool, option: str = "--out") -> None:
    """Fail before any work when an output path cannot be what the command will write there.

    ``directory=True``: the command writes several files into ``path`` (created if missing);
    otherwise it writes the file ``path``. ``/``, the home directory and system folders are
    refused (:func:`netxray._meta.check_output_dir`).
    """
    from netxray._meta import check_output_dir

    try:
        check_output_dir(path, option, directory=directory)
    except PermissionError as exc:
        fail(str(exc))
    if directory:
        if path.exists() and not path.is_dir():
            fail(f"{option} {path}: a file is there; expected a directory (new or existing) for the results")
    elif path.is_dir():
        fail(f"{option} {path}: is a directory; expected a file name, e.g. {path / 'result.csv'}")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        fail(f"{option} {path}: {blocker} is a file, not a directory")


def unique_names(paths: list[Path], suffixes: tuple[str, ...] = (".safetensors",)) -> list[str]:
    """Readable, unique model names for checkpoint paths: the file stem (for ``suffixes``) or the
    directory name, with ``-2``, ``-3``, ... appended to repeats."""
    names: list[str] = []
    for p in paths:
        base = (p.stem if p.suffix in suffixes else p.name) or str(p)
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names
