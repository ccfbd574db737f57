"""The ``image`` task: shipped digits as pixel sequences, both token conventions, CIFAR-10 files."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import attnzoo
from attnzoo.arena.datasets import mnist_5k, sklearn_digits
from attnzoo.arena.tasks.image import ImageExample, ImageTask, rgb_to_grayscale

pytest.importorskip("sklearn")


def digits(**kwargs) -> ImageTask:
    options = {"n_train": 10, "n_val": 4, "n_test": 4, "source": "digits", "size": 8}
    return ImageTask(**{**options, "cache_dir": False, **kwargs})


def test_digits_are_scaled_to_0_255_and_a_seeded_permutation():
    images, labels = sklearn_digits()
    scaled = [((im.numpy().astype(int) * 255 + 8) // 16).astype(np.uint8) for im in images]
    everything = digits().generate(len(images))
    expected = Counter((im.tobytes(), int(lab)) for im, lab in zip(scaled, labels, strict=True))
    assert Counter((e.image.tobytes(), e.label) for e in everything) == expected  # a permutation
    assert everything[0].image.shape == (8, 8) and everything[0].image.dtype == np.uint8
    assert max(int(e.image.max()) for e in everything) == 255
    first = digits().generate(50)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, everything, strict=False))
    assert [e.label for e in digits(seed=1).generate(50)] != [e.label for e in first]
    with pytest.raises(ValueError, match="has 1797 images, fewer than the 1798 requested"):
        digits().generate(1798)


def test_digits_upsample_by_pixel_repetition():
    small, big = digits().generate(5), digits(size=16).generate(5)
    for a, b in zip(small, big, strict=True):
        assert b.image.shape == (16, 16)
        assert np.array_equal(b.image, np.kron(a.image, np.ones((2, 2), np.uint8)))


def test_mnist_is_zero_padded_to_32_and_centred():
    images, labels = mnist_5k()
    lookup = {im.numpy().tobytes(): int(lab) for im, lab in zip(images, labels, strict=True)}
    task = ImageTask(n_train=40, n_val=5, n_test=5, cache_dir=False)
    assert task.max_len == 1024 and task.vocab_size == 256
    for ex in task.generate(50):
        assert ex.image.shape == (32, 32)
        inner = ex.image[2:30, 2:30]
        assert lookup[np.ascontiguousarray(inner).tobytes()] == ex.label
        assert ex.image.sum() == inner.sum()  # the border is zero
    odd = ImageTask(n_train=1, n_val=1, n_test=1, size=29, cache_dir=False).generate(3)
    assert odd[0].image.shape == (29, 29) and not odd[0].image[-1].any()
    with pytest.raises(ValueError, match="has 5000 images, fewer than the 5001 requested"):
        task.generate(5001)


def test_both_token_conventions():
    ex = ImageExample(np.array([[0, 7], [255, 1]], np.uint8), 3)
    lra, shifted = digits(), digits(zero_is_padding=False)
    assert lra.encode(ex) == [0, 7, 255, 1] and lra.vocab_size == 256
    assert shifted.encode(ex) == [1, 8, 256, 2] and shifted.vocab_size == 257
    a, b = lra.splits()["train"].inputs, shifted.splits()["train"].inputs
    assert torch.equal(b, a + 1) and int(b.min()) >= 1 and int(a.min()) == 0
    assert int(a.max()) < 256 and int(b.max()) < 257


def test_examples_are_read_only():
    ex = digits().generate(1)[0]
    with pytest.raises(ValueError, match="read-only"):
        ex.image[0, 0] = 1


def test_splits_via_create_are_cached_and_reused(tmp_path, monkeypatch):
    options = {"seed": 0, "n_train": 12, "n_val": 4, "n_test": 4, "source": "digits", "size": 8}
    task = attnzoo.create("image", **options, cache_dir=tmp_path)
    splits = task.splits()
    examples = task.generate(20)
    assert tuple(splits["train"].inputs.shape) == (12, 64)
    assert splits["val"].inputs[0].tolist() == examples[12].image.reshape(-1).tolist()
    assert splits["test"].labels.tolist() == [e.label for e in examples[16:]]
    assert len(list(tmp_path.glob("image-*.pt"))) == 1

    def boom(self, n):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(ImageTask, "generate", boom)
    again = attnzoo.create("image", **options, cache_dir=tmp_path).splits()
    assert torch.equal(again["train"].inputs, splits["train"].inputs)
    other = attnzoo.create("image", **options, zero_is_padding=False, cache_dir=tmp_path)
    assert other.cache_path() != task.cache_path()
    assert attnzoo.info("image").paper.year == 2021


def test_rgb_to_grayscale_follows_tensorflow():
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    # tf: uint8(float32(sum_c w_c * x_c / 255) * 255.5), a truncating cast
    assert rgb_to_grayscale(rgb).tolist() == [255, 0, 76, 149, 29]
    values = np.random.default_rng(0).integers(0, 256, size=(4000, 3)).astype(np.uint8)
    exact = np.floor((values / 255.0) @ np.array([0.2989, 0.5870, 0.1140]) * 255.5)
    assert (rgb_to_grayscale(values) == exact).mean() > 0.999  # float32 vs float64 at ties


def write_batch(path: Path, rgb: np.ndarray, labels: list[int], protocol: int = 2) -> None:
    """A CIFAR-10 python batch (the originals are Python 2 pickles, protocol 2)."""
    data = rgb.transpose(0, 3, 1, 2).reshape(len(rgb), 3072)  # (N, 3072): R, G, B planes
    batch = {b"data": data, b"labels": labels, b"batch_label": b"fixture", b"filenames": [b"a"]}
    raw = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:  # name numpy 1's module, as the released (numpy 1) batches do
        raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(raw)


def cifar(folder: Path, per_batch: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(6 * per_batch, 32, 32, 3)).astype(np.uint8)
    labels = rng.integers(0, 10, size=6 * per_batch)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        part = slice(i * per_batch, (i + 1) * per_batch)
        protocol = 5 if name == "test_batch" else 2  # numpy pickles differently from protocol 5
        write_batch(folder / name, rgb[part], labels[part].tolist(), protocol)
    return rgb, labels


def test_load_files_reads_cifar_batches_in_grayscale_split_as_lra(tmp_path):
    rgb, labels = cifar(tmp_path)
    task = ImageTask(n_train=100, n_val=100, n_test=100, data_dir=tmp_path)
    examples = task.examples()
    assert [len(examples[s]) for s in ("train", "val", "test")] == [45, 5, 10]
    gray = rgb_to_grayscale(rgb)
    assert np.array_equal(examples["train"][3].image, gray[3])
    assert np.array_equal(examples["val"][0].image, gray[45])  # train[90%:]
    assert np.array_equal(examples["test"][9].image, gray[59])
    assert [e.label for e in examples["test"]] == labels[50:].tolist()
    split = task.splits()["train"]
    assert tuple(split.inputs.shape) == (45, 1024)
    capped = ImageTask(n_train=4, n_val=2, n_test=2, data_dir=tmp_path).splits()
    assert [len(capped[s]) for s in ("train", "val", "test")] == [4, 2, 2]


def test_load_files_rejects_bad_batches_naming_the_file(tmp_path):
    cifar(tmp_path, per_batch=2)
    task = ImageTask(n_train=2, n_val=2, n_test=2, data_dir=tmp_path)
    bad = tmp_path / "data_batch_3"
    write_batch(bad, np.zeros((2, 32, 32, 3), np.uint8), [1, 12])
    with pytest.raises(ValueError, match="data_batch_3: b'labels' must hold 2 ints in 0-9"):
        task.splits()
    bad.write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(ValueError, match="data_batch_3: b'data' must be an"):
        task.splits()
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match="data_batch_3: b'data' must have 3072 columns"):
        task.splits()
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR-10 python batch"):
        task.splits()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_load_files_refuses_pickled_code(tmp_path):
    cifar(tmp_path, per_batch=2)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(ValueError, match="refusing to load"):
        ImageTask(n_train=2, n_val=2, n_test=2, data_dir=tmp_path).splits()


def test_load_files_names_missing_batches(tmp_path):
    cifar(tmp_path, per_batch=2)
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(ValueError, match="lacks data_batch_5"):
        ImageTask(n_train=2, n_val=2, n_test=2, data_dir=tmp_path).splits()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"source": "cifar"}, ValueError, "source must be one of"),
        ({"source": "mnist", "size": 20}, ValueError, "size must be >= 28 .* for source='mnist'"),
        ({"size": 12}, ValueError, "size must be a multiple of 8 for source='digits'"),
        ({"size": 0}, ValueError, "size must be an int >= 1"),
        ({"zero_is_padding": 1}, TypeError, "zero_is_padding must be a bool"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        digits(**kwargs)


def test_cifar_files_need_size_32(tmp_path):
    with pytest.raises(ValueError, match="size must be 32 for CIFAR-10 files"):
        ImageTask(size=28, data_dir=tmp_path)


def test_mnist_at_14_pixels_is_the_2x2_mean(tmp_path):
    task = attnzoo.create(
        "image", seed=0, n_train=8, n_val=2, n_test=2, size=14, cache_dir=tmp_path
    )
    assert task.max_len == 196
    example = task.generate(1)[0]
    images, _ = mnist_5k()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    source = images[order[0]].float()
    expected = torch.nn.functional.avg_pool2d(source[None, None], 2)[0, 0]
    assert (torch.from_numpy(example.image.astype("float32")) - expected).abs().max() <= 0.5
    with pytest.raises(ValueError, match="size must be >= 28"):
        attnzoo.create("image", n_train=4, n_val=2, n_test=2, size=20)
