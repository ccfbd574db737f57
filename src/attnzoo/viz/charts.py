"""Nadaraya–Watson pictures: the fits (average vs Gaussian vs learned) and the weight heat map.

The survey's first picture (article 1, after d2l): kernel regression is attention pooling, and
weighting the training values by closeness to the query fits far better than averaging them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

import attnzoo
from attnzoo._checks import check_finite, check_ndim, check_positive_int, type_name
from attnzoo.functional.pooling import average_pooling, nadaraya_watson
from attnzoo.viz._mpl import axes_for, finish

__all__ = [
    "NadarayaWatsonExample",
    "nadaraya_watson_example",
    "plot_nadaraya_watson",
    "plot_nadaraya_watson_weights",
]

PathLike = str | os.PathLike | None


@dataclass(frozen=True)
class NadarayaWatsonExample:
    """Data, predictions and weights of the survey's kernel-regression example.

    ``predictions`` and ``weights`` are keyed by a label (``"average"``, ``"gaussian (h=1)"``,
    ``"learned (w=...)"``); ``weights`` are ``(n_test, n_train)``, rows summing to one (average
    pooling's are uniform).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_truth: torch.Tensor
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def nadaraya_watson_example(
    *, n_train: int = 50, seed: int = 0, bandwidth: float = 1.0, epochs: int = 5, lr: float = 0.5
) -> NadarayaWatsonExample:
    """The survey's example: ``f(x) = 2 sin(x) + x^0.8`` from noisy samples, three ways.

    ``n_train`` inputs uniform in ``[0, 5)`` with Gaussian noise (std 0.5) on the targets; test
    inputs ``0, 0.1, ..., 4.9``. Average pooling; Gaussian Nadaraya–Watson with ``bandwidth``;
    and the parametric version (registry ``nadaraya_watson``, a learned inverse bandwidth ``w``)
    trained for ``epochs`` full-batch SGD steps on the leave-one-out loss.

    Args:
        n_train: Training points.
        seed: Seed of the data.
        bandwidth: ``h`` of the non-parametric Gaussian kernel.
        epochs: SGD steps of the learned bandwidth (0: untrained, ``w = 1``).
        lr: SGD learning rate.

    Returns:
        A :class:`NadarayaWatsonExample`.

    Shape:
        - x_train, y_train: ``(n_train,)``; x_test, y_truth, predictions: ``(50,)``;
          weights: ``(50, n_train)``

    Example:
        >>> ex = nadaraya_watson_example(n_train=10, epochs=0)
        >>> list(ex.predictions), tuple(ex.weights["average"].shape)
        (['average', 'gaussian (h=1)', 'learned (w=1.00)'], (50, 10))
    """
    n_train = check_positive_int("n_train", n_train)
    seed = check_positive_int("seed", seed, minimum=0)
    bandwidth = check_finite("bandwidth", bandwidth, positive=True)
    epochs = check_positive_int("epochs", epochs, minimum=0)
    lr = check_finite("lr", lr, positive=True)
    gen = torch.Generator().manual_seed(seed)
    x_train, _ = torch.sort(torch.rand(n_train, generator=gen) * 5)
    noise = torch.normal(0.0, 0.5, (n_train,), generator=gen)
    y_train = 2 * torch.sin(x_train) + x_train**0.8 + noise
    x_test = torch.arange(0, 5, 0.1)
    y_truth = 2 * torch.sin(x_test) + x_test**0.8
    n_test = len(x_test)
    average = average_pooling(x_test, x_train, y_train)
    gaussian, gaussian_weights = nadaraya_watson(x_test, x_train, y_train, bandwidth=bandwidth)
    nw = attnzoo.create("nadaraya_watson", 1)
    keys, values = x_train.view(1, n_train, 1), y_train.view(1, n_train, 1)  # (1, n, 1)
    leave_one_out = ~torch.eye(n_train, dtype=torch.bool)[None]
    optimizer = torch.optim.SGD(nw.parameters(), lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = ((nw(keys, keys, values=values, mask=leave_one_out) - values) ** 2).mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        queries = x_test.view(1, n_test, 1)  # (1, n_test, 1)
        learned, learned_weights = nw(queries, keys, values=values, need_weights=True)
    w = nw.w.item()
    return NadarayaWatsonExample(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_truth=y_truth,
        predictions={
            "average": average,
            f"gaussian (h={bandwidth:g})": gaussian,
            f"learned (w={w:.2f})": learned[0, :, 0],
        },
        weights={
            "average": torch.full((n_test, n_train), 1.0 / n_train),
            f"gaussian (h={bandwidth:g})": gaussian_weights,
            f"learned (w={w:.2f})": learned_weights[0, 0],
        },
    )


def _vector(name: str, x: Any, size: int | None = None) -> torch.Tensor:
    x = check_ndim(name, x, (1,), "(n,)").detach()
    if size is not None and len(x) != size:
        raise ValueError(f"{name} must have {size} entries, got {len(x)}")
    return x.float().cpu()


def plot_nadaraya_watson(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_truth: torch.Tensor,
    predictions: Mapping[str, torch.Tensor],
    *,
    title: str | None = "Nadaraya–Watson kernel regression",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Training points, the true function and each prediction (average vs Gaussian vs learned).

    Args:
        x_train: ``(n,)`` training inputs (keys).
        y_train: ``(n,)`` training targets (values).
        x_test: ``(m,)`` test inputs (queries).
        y_truth: ``(m,)`` true function at ``x_test``.
        predictions: ``{label: (m,) prediction}``, drawn in order.
        title: Axes title.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - x_train, y_train: ``(n,)``; x_test, y_truth and each prediction: ``(m,)``

    Example:
        >>> x = torch.linspace(0, 1, 5)
        >>> fig = plot_nadaraya_watson(x, x, x, x, {"identity": x})
        >>> len(fig.axes[0].lines)
        2
    """
    x_train = _vector("x_train", x_train)
    y_train = _vector("y_train", y_train, len(x_train))
    x_test = _vector("x_test", x_test)
    y_truth = _vector("y_truth", y_truth, len(x_test))
    if not isinstance(predictions, Mapping):
        raise TypeError(
            f"predictions must be a dict label -> (m,) tensor, got {type_name(predictions)}"
        )
    curves = {
        str(k): _vector(f"predictions[{k!r}]", v, len(x_test)) for k, v in predictions.items()
    }
    fig, (axis,) = axes_for(ax, 1, figsize=(5.4, 3.8))
    axis.plot(x_test.numpy(), y_truth.numpy(), color="black", label="truth")
    for index, (label, curve) in enumerate(curves.items()):
        axis.plot(x_test.numpy(), curve.numpy(), color=f"C{index}", linestyle="--", label=label)
    axis.scatter(x_train.numpy(), y_train.numpy(), s=10, color="gray", alpha=0.6, label="samples")
    axis.set_xlabel("x")
    axis.set_ylabel("y")
    axis.legend(fontsize="small")
    if title:
        axis.set_title(title)
    return finish(fig, out)


def plot_nadaraya_watson_weights(
    weights: torch.Tensor,
    *,
    x_test: torch.Tensor | None = None,
    x_train: torch.Tensor | None = None,
    title: str | None = "Attention weights",
    cmap: str = "Reds",
    ax: Any = None,
    out: PathLike = None,
) -> Any:
    """Heat map of the kernel weights: test inputs (queries) on y, training inputs (keys) on x.

    With ``x_test`` / ``x_train`` the rows / columns are sorted by input value and the axes are
    labelled with it, so a Gaussian kernel shows as a band along the diagonal.

    Args:
        weights: ``(n_test, n_train)`` weights.
        x_test: ``(n_test,)`` query inputs.
        x_train: ``(n_train,)`` key inputs.
        title: Axes title.
        cmap: matplotlib colour map.
        ax: Axes to draw on; default a new figure.
        out: Save the figure there as PNG (dpi 100).

    Returns:
        The matplotlib ``Figure``.

    Shape:
        - weights: ``(n_test, n_train)``

    Example:
        >>> fig = plot_nadaraya_watson_weights(torch.eye(3))
        >>> fig.axes[0].get_ylabel()
        'sorted testing inputs'
    """
    weights = check_ndim("weights", weights, (2,), "(n_test, n_train)").detach().float().cpu()
    rows, cols = weights.shape
    extent = None
    if x_test is not None:
        x_test = _vector("x_test", x_test, rows)
        order = x_test.argsort()
        weights, x_test = weights[order], x_test[order]
    if x_train is not None:
        x_train = _vector("x_train", x_train, cols)
        order = x_train.argsort()
        weights, x_train = weights[:, order], x_train[order]
    if x_test is not None and x_train is not None:
        extent = (float(x_train[0]), float(x_train[-1]), float(x_test[-1]), float(x_test[0]))
    fig, (axis,) = axes_for(ax, 1, figsize=(4.6, 4.0))
    image = axis.imshow(weights.numpy(), cmap=cmap, aspect="auto", extent=extent)
    axis.set_xlabel("sorted training inputs")
    axis.set_ylabel("sorted testing inputs")
    fig.colorbar(image, ax=axis, shrink=0.8)
    if title:
        axis.set_title(title)
    return finish(fig, out)
