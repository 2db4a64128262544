"""Built-in data sets that need no download: ``digits``, ``mnist1d`` and ``blobs``.

Each returns a :class:`DataSplits` whose train/test split is seeded and class-stratified
(``seed`` and ``test_fraction``). The generated sets (``mnist1d``, ``blobs``) take a separate
``data_seed`` so that changing the split seed does not change the data itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from netxray.data.dataset import DataError, Dataset, DataSplits, check_test_fraction, split_dataset


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(value: object, name: str, minimum: float = 0.0) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number >= {minimum}, got {value!r}") from None
    if not np.isfinite(v) or v < minimum:
        raise DataError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return v


def _balanced_counts(n: int, k: int) -> list[int]:
    """n samples over k classes as evenly as possible (the first n mod k classes get one more)."""
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


# --------------------------------------------------------------------------------------- digits
@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixels are 0..16 in the source
    return x, raw.target.astype(np.int64)


def digits(*, seed: int = 0, test_fraction: float = 0.2) -> DataSplits:
    """scikit-learn's 8×8 handwritten digits (1797 samples, 10 classes), offline.

    Images are ``(N, 1, 8, 8)`` float32, pixel values 0..16 scaled to [0, 1] (x/16). The split is
    class-stratified and seeded.

    Example:
        >>> s = digits(seed=0)
        >>> s.train.input_shape, s.num_classes, len(s.train) + len(s.test)
        ((1, 8, 8), 10, 1797)
    """
    x, y = _digits_arrays()
    return split_dataset(Dataset(x.copy(), y.copy(), "digits", 10), test_fraction, seed, keep_whole=False)


# -------------------------------------------------------------------------------------- mnist1d
# The ten 12-point digit templates of MNIST-1D (Greydanus 2020, "Scaling down deep learning").
_MNIST1D_TEMPLATES = np.array(
    [
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ],
    dtype=np.float64,
)


def mnist1d_templates() -> np.ndarray:
    """The ten MNIST-1D templates, standardized per row, shifted to start at 0, divided by 6: (10, 12)."""
    t = _MNIST1D_TEMPLATES - _MNIST1D_TEMPLATES.mean(axis=1, keepdims=True)
    t = t / t.std(axis=1, keepdims=True)
    t = t - t[:, :1]  # every template starts (and ends) at 0, so zero padding joins smoothly
    return t / 6.0


def _resample(signal: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of ``signal`` onto ``length`` evenly spaced points over the same span."""
    return np.interp(np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, len(signal)), signal)


def _mnist1d_sample(
    template: np.ndarray,
    rng: np.random.Generator,
    *,
    padding: tuple[int, int],
    scale_coeff: float,
    max_translation: int,
    corr_noise_scale: float,
    iid_noise_scale: float,
    shear_scale: float,
    length: int,
) -> np.ndarray:
    low, high = padding
    # pad: a random number of trailing zeros; the tiny offset keeps the digit itself non-zero so
    # the noise mask below can tell signal from padding.
    n_pad = low + int(rng.random() * (high - low + 1))
    x = np.concatenate([template + 1e-8, np.zeros(n_pad)])
    # dilate: stretch (12 + n_pad) points onto a fixed canvas of 12 + high points
    canvas = len(template) + high
    x = _resample(x, canvas)
    x = x * (1.0 + scale_coeff * (rng.random() - 0.5))  # scale
    x = np.roll(x, int(rng.integers(max_translation)))  # translate (circular)
    # correlated (Gaussian-smoothed) noise fills the empty canvas, iid noise goes everywhere
    corr = gaussian_filter1d(corr_noise_scale * rng.standard_normal(canvas), sigma=2.0)
    x = np.where(x != 0, x, corr)
    x = x + iid_noise_scale * rng.standard_normal(canvas)
    # shear: add a random linear trend across the canvas
    x = x - shear_scale * (rng.random() - 0.5) * np.linspace(-0.5, 0.5, canvas)
    return _resample(x, length)  # subsample to the final length


@lru_cache(maxsize=8)
def _mnist1d_arrays(
    n: int,
    data_seed: int,
    padding: tuple[int, int],
    scale_coeff: float,
    max_translation: int,
    corr_noise_scale: float,
    iid_noise_scale: float,
    shear_scale: float,
    length: int,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(data_seed)
    templates = mnist1d_templates()
    xs, ys = [], []
    for label, count in enumerate(_balanced_counts(n, len(templates))):
        for _ in range(count):
            xs.append(
                _mnist1d_sample(
                    templates[label], rng, padding=padding, scale_coeff=scale_coeff,
                    max_translation=max_translation, corr_noise_scale=corr_noise_scale,
                    iid_noise_scale=iid_noise_scale, shear_scale=shear_scale, length=length,
                )
            )
            ys.append(label)
    order = rng.permutation(len(ys))
    x = np.stack(xs)[order]
    y = np.asarray(ys, dtype=np.int64)[order]
    x = (x - x.mean()) / x.std()  # the reference standardizes the whole set with one mean and std
    x = x.astype(np.float32)[:, None, :]
    x.flags.writeable = False  # cached: callers get copies
    y.flags.writeable = False
    return x, y


def mnist1d(
    n: int = 5000,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    data_seed: int = 42,
    length: int = 40,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
) -> DataSplits:
    """MNIST-1D: procedurally generated 1-D digit signals, ``(N, 1, 40)`` float32, 10 classes.

    A faithful local re-implementation of the generator of Greydanus (2020, "Scaling down deep
    learning", github.com/greydanus/mnist1d) with its default knobs. It is *not* the published
    pickle: it draws from ``numpy.random.default_rng(data_seed)`` instead of the legacy global
    RNG, so the numbers differ sample by sample while the distribution is the same. Nothing is
    downloaded.

    Each sample starts from its class's 12-point template t (standardized, t[0] = 0, /6), then:
    pad with p ~ U{36..60} zeros → linearly resample onto 12 + 60 = 72 points (dilate) →
    multiply by 1 + 0.4·(u − ½) (scale) → circular shift by k ~ U{0..47} (translate) → replace
    the zeros by Gaussian-filtered (σ = 2) N(0, 0.25²) noise → add iid N(0, 0.02²) noise → subtract
    0.75·(u − ½)·linspace(−½, ½) (shear) → resample to 40 points. Classes are balanced (counts
    differ by at most one), samples are shuffled, and the whole set is standardized with one
    global mean and standard deviation, as in the reference.

    ``data_seed`` fixes the data (42, the reference's seed); ``seed`` only moves the seeded,
    stratified train/test split. With the default 5000 samples and ``test_fraction=0.2`` the split
    is 4000/1000 like the published one. Generation takes a fraction of a second and is cached.

    Example:
        >>> s = mnist1d(1000)
        >>> s.train.input_shape, s.num_classes, len(s.train), len(s.test)
        ((1, 40), 10, 800, 200)
    """
    n = _check_int(n, "mnist1d: n", 10)
    _check_int(data_seed, "mnist1d: data_seed", 0)
    length = _check_int(length, "mnist1d: length", 2)
    max_translation = _check_int(max_translation, "mnist1d: max_translation", 1)
    try:
        low, high = (int(v) for v in padding)
    except (TypeError, ValueError):
        raise DataError(f"mnist1d: padding must be a pair (low, high), got {padding!r}") from None
    if not 0 <= low <= high:
        raise DataError(f"mnist1d: padding must satisfy 0 <= low <= high, got {padding!r}")
    check_test_fraction(test_fraction)
    scale_coeff = _check_float(scale_coeff, "mnist1d: scale_coeff")
    corr_noise_scale = _check_float(corr_noise_scale, "mnist1d: corr_noise_scale")
    iid_noise_scale = _check_float(iid_noise_scale, "mnist1d: iid_noise_scale")
    shear_scale = _check_float(shear_scale, "mnist1d: shear_scale")
    x, y = _mnist1d_arrays(
        n, int(data_seed), (low, high), scale_coeff, max_translation,
        corr_noise_scale, iid_noise_scale, shear_scale, length,
    )
    name = _mnist1d_name(
        n=n, data_seed=int(data_seed), length=length, padding=(low, high), scale_coeff=scale_coeff,
        max_translation=max_translation, corr_noise_scale=corr_noise_scale,
        iid_noise_scale=iid_noise_scale, shear_scale=shear_scale,
    )
    return split_dataset(Dataset(x.copy(), y.copy(), name, 10), test_fraction, seed, keep_whole=False)


_MNIST1D_DEFAULTS: dict[str, object] = {
    "n": 5000, "data_seed": 42, "length": 40, "padding": (36, 60), "scale_coeff": 0.4,
    "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2, "shear_scale": 0.75,
}


def _mnist1d_name(**options: object) -> str:
    """``mnist1d`` plus every option that differs from its default, in spec syntax.

    ``mnist1d:n=1000,data_seed=7`` names the data that ``load_data("mnist1d:n=1000,data_seed=7")``
    regenerates; with all defaults the name is plain ``mnist1d``. ``padding`` (not a spec
    option) is written ``padding=LOW-HIGH``.
    """
    parts = []
    for key, default in _MNIST1D_DEFAULTS.items():
        value = options[key]
        if value == default:
            continue
        if key == "padding":
            low, high = value  # type: ignore[misc]
            parts.append(f"padding={low}-{high}")
        elif isinstance(value, float):
            parts.append(f"{key}={value:g}")
        else:
            parts.append(f"{key}={value}")
    return "mnist1d" + (":" + ",".join(parts) if parts else "")


# ---------------------------------------------------------------------------------------- blobs
def _blob_centers(num_classes: int, dim: int, separation: float, rng: np.random.Generator) -> np.ndarray:
    radius = separation / np.sqrt(2.0)
    if num_classes <= dim:
        # orthonormal directions: every pair of centres is exactly `separation` apart
        q, _ = np.linalg.qr(rng.standard_normal((dim, num_classes)))
        return radius * q.T
    dirs = rng.standard_normal((num_classes, dim))
    return radius * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def blobs(
    num_classes: int = 3,
    dim: int = 2,
    separation: float = 4.0,
    n: int = 600,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    data_seed: int = 0,
) -> DataSplits:
    """A seeded Gaussian mixture: ``(N, dim)`` float32, ``num_classes`` balanced classes.

    Class c has mean μ_c and identity covariance, x ~ N(μ_c, I_dim). The means have norm
    separation/√2 and, when ``num_classes <= dim``, orthonormal directions, so every pair of means
    is exactly ``separation`` within-class standard deviations apart; with more classes than
    dimensions the directions are random unit vectors (pairs may be closer). ``data_seed`` fixes
    the data, ``seed`` the stratified split.

    Example:
        >>> s = blobs(num_classes=4, dim=8, separation=6.0, n=400)
        >>> s.train.input_shape, s.num_classes, len(s.train) + len(s.test)
        ((8,), 4, 400)
    """
    num_classes = _check_int(num_classes, "blobs: num_classes", 1)
    dim = _check_int(dim, "blobs: dim", 1)
    n = _check_int(n, "blobs: n", num_classes)
    separation = _check_float(separation, "blobs: separation")
    data_seed = _check_int(data_seed, "blobs: data_seed", 0)
    check_test_fraction(test_fraction)
    rng = np.random.default_rng(data_seed)
    centers = _blob_centers(num_classes, dim, separation, rng)
    y = np.repeat(np.arange(num_classes), _balanced_counts(n, num_classes))
    x = centers[y] + rng.standard_normal((n, dim))
    order = rng.permutation(n)
    name = f"blobs:classes={num_classes},dim={dim},separation={separation:g},n={n},data_seed={data_seed}"
    ds = Dataset(x[order].astype(np.float32), y[order].astype(np.int64), name, num_classes)
    return split_dataset(ds, test_fraction, seed, keep_whole=False)
