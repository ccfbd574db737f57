"""Pathfinder: the Linsley et al. generator as LRA used it, its tokens, splits and LRA's files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import attnzoo
from attnzoo.arena.tasks import _raster
from attnzoo.arena.tasks._snakes import SnakeRenderer
from attnzoo.arena.tasks.pathfinder import (
    CONTOUR_FOLDERS,
    RESOLUTIONS,
    Pathfinder,
    PathfinderExample,
    snake_params,
)

ndimage = pytest.importorskip("scipy.ndimage")


def task(seed=0, **kwargs):
    return Pathfinder(
        seed=seed, **{"n_train": 6, "n_val": 2, "n_test": 2, "cache_dir": False, **kwargs}
    )


@pytest.fixture(scope="module")
def renders():
    return task(seed=3).renders(160)


def test_images_shapes_dtype_and_the_generate_stream(renders):
    examples = task(seed=3).generate(20)
    assert all(isinstance(e, PathfinderExample) for e in examples)
    for example, render in zip(examples, renders, strict=False):
        assert example.image.shape == (32, 32) and example.image.dtype == np.uint8
        assert example.label in (0, 1) and example.label == render.label
        assert np.array_equal(example.image, render.image)
        assert not example.image.flags.writeable
        assert int(example.image.min()) == 0 and int(example.image.max()) == 255  # byte-scaled
    assert examples[0] == PathfinderExample(examples[0].image.copy(), examples[0].label)


def test_labels_are_balanced_in_shuffled_pairs(renders):
    labels = np.array([r.label for r in renders])
    assert labels.mean() == 0.5
    assert all(labels[i] + labels[i + 1] == 1 for i in range(0, len(labels), 2))
    assert 0.3 < np.mean(labels[::2]) < 0.7  # the pairs are shuffled, not alternating


def test_two_marker_blobs_on_the_snake_tips(renders):
    counts = [ndimage.label(r.marker_layer > 0.5)[1] for r in renders]
    assert set(counts) <= {1, 2} and counts.count(2) >= 0.95 * len(counts)  # 1: they overlap
    for r in renders:
        for y, x in r.markers:
            assert r.marker_layer[y, x] > 0.9 and r.image[y, x] > 0
        origins_apart = math.dist(*r.origins)
        assert abs(origins_apart - 7) <= 1  # seed_distance 7, rounded to pixels
        assert r.markers[0] in r.origins and r.markers[1] in r.terminals


def test_markers_are_joined_by_one_snake_exactly_when_the_label_is_one(renders):
    """Independent check on the snake masks: dash cores, gaps bridged, components labelled."""

    def joined(render):
        for snake in render.snakes:
            core = snake > 0.3
            components, _ = ndimage.label(ndimage.binary_dilation(core, iterations=2))
            (ay, ax), (by, bx) = render.markers
            if core[ay, ax] and core[by, bx] and components[ay, ax] == components[by, bx]:
                return True
        return False

    for r in renders:
        for y, x in r.markers:  # each marker sits on a target snake's dash
            assert r.snakes[:, y, x].max() > 0.3
    positives = [joined(r) for r in renders if r.label == 1]
    negatives = [joined(r) for r in renders if r.label == 0]
    assert all(positives)
    # the two target snakes may touch where one's newest dash is not yet in the mask (as in
    # the original), so a few negatives look joined
    assert sum(negatives) <= 0.05 * len(negatives)


def test_each_target_snake_is_one_chain_of_dashes(renders):
    bridged = [ndimage.binary_dilation(s > 0.3, iterations=2) for r in renders for s in r.snakes]
    chains = [ndimage.label(mask)[1] for mask in bridged]
    assert chains.count(1) >= 0.97 * len(chains)


def test_about_sixty_percent_of_pixels_are_black(renders):
    """As in LRA's released data: about 60% of the original's 32x32 hard images are exactly 0."""
    zeros = np.array([np.mean(r.image == 0) for r in renders])
    assert 0.50 <= zeros.mean() <= 0.70
    assert zeros.min() > 0.35


def test_target_dashes_are_dimmer_than_distractors(renders):
    """Target dashes have contrast 0.75 x 2 = 1.5, distractors 2: peaks near 191 and 255."""
    target_peaks, distractor_peaks = [], []
    for r in renders:
        alone = r.marker_layer == 0
        targets = (r.snakes.max(0) > 0) & (r.distractors == 0) & alone
        distractors = (r.distractors > 0) & (r.snakes.max(0) == 0) & alone
        target_peaks.append(int(r.image[targets].max()))
        if distractors.any():
            distractor_peaks.append(int(r.image[distractors].max()))
            assert target_peaks[-1] < distractor_peaks[-1]
    assert 180 <= np.median(target_peaks) <= 200
    assert len(distractor_peaks) > 0.9 * len(renders) and np.median(distractor_peaks) == 255


def test_deterministic_per_seed_and_distinct():
    first = task(seed=5).generate(30)
    assert first == task(seed=5).generate(30)
    assert task(seed=5).generate(10) == first[:10]  # prefix-consistent
    other = task(seed=6).generate(30)
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))
    assert len({e.image.tobytes() for e in first}) == 30


@pytest.mark.parametrize(("zero_is_padding", "vocab"), [(True, 256), (False, 257)])
def test_splits_through_create(tmp_path, monkeypatch, zero_is_padding, vocab):
    options = {"n_train": 8, "n_val": 2, "n_test": 4, "zero_is_padding": zero_is_padding}
    pf = attnzoo.create("pathfinder", seed=1, cache_dir=tmp_path, **options)
    assert attnzoo.info("pathfinder").family == "arena" and pf.num_classes == 2
    assert pf.vocab_size == vocab and pf.max_len == 1024
    splits = pf.splits()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 4]
    train = splits["train"]
    assert train.inputs.shape == (8, 1024) and train.inputs.dtype == torch.long
    assert int(train.inputs.max()) == vocab - 1
    assert int(train.inputs.min()) == (0 if zero_is_padding else 1)  # black = padding, or not
    examples = pf.generate(14)
    pixels = torch.from_numpy(examples[0].image.astype(np.int64)).flatten()  # (1024,) row-major
    assert torch.equal(train.inputs[0], pixels + (0 if zero_is_padding else 1))
    assert train.labels.tolist() == [e.label for e in examples[:8]]
    assert sum(train.labels.tolist()) == 4
    assert pf.cache_path().is_file()

    def boom(self, n):
        raise RuntimeError("the second build must read the cache")

    monkeypatch.setattr(Pathfinder, "generate", boom)
    again = attnzoo.create("pathfinder", seed=1, cache_dir=tmp_path, **options).splits()
    assert torch.equal(again["test"].inputs, splits["test"].inputs)


def test_other_resolutions_and_difficulties():
    assert snake_params(32, 14).num_distractors == 5 and snake_params(32, 14).distractor_length == 4
    assert snake_params(32, 6).num_distractors == 10 and snake_params(32, 9).num_distractors == 6
    assert snake_params(128, 14).num_distractors == 8 and snake_params(128, 14).margins == (2, 3)
    assert snake_params(256, 14).padding == 22 and snake_params(64, 14).continuity == 1.8
    assert set(RESOLUTIONS) == {32, 64, 128, 256} and set(CONTOUR_FOLDERS) == {6, 9, 14}
    easy = task(contour_length=6).renders(4)
    assert all(r.image.shape == (32, 32) for r in easy)
    big = task(resolution=128).generate(2)
    assert big[0].image.shape == (128, 128) and task(resolution=128).max_len == 128**2
    assert np.mean(big[0].image == 0) > 0.6  # thin paths on a large black field


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"resolution": 48}, ValueError, "resolution must be one of"),
        ({"contour_length": 10}, ValueError, "contour_length must be one of"),
        ({"zero_is_padding": 1}, TypeError, "zero_is_padding must be a bool"),
        ({"n_val": 0}, ValueError, "n_val"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        Pathfinder(**{"cache_dir": False, **kwargs})
    with pytest.raises(TypeError):
        Pathfinder(0)  # keyword-only


def test_encode_checks_the_image_and_generate_checks_n():
    with pytest.raises(ValueError, match="n must be"):
        task().generate(-1)
    assert task().generate(0) == []
    with pytest.raises(ValueError, match=r"\(32, 32\) uint8"):
        task().encode(PathfinderExample(np.zeros((16, 16), np.uint8), 0))


def test_rasters_equal_pillow_at_lra_settings():
    """At 32 px (1-px fine lines) dashes, halos and markers are Pillow's drawing and resampling."""
    pil = pytest.importorskip("PIL.Image")
    draw = pytest.importorskip("PIL.ImageDraw")
    params = snake_params(32, 14)
    renderer = SnakeRenderer(params)
    margin, aa, length = 1, params.antialias, params.paddle_length
    reach = length + math.ceil(params.thickness) + margin
    size, centre = 2 * reach * aa + 1, reach * aa
    lanczos = pil.Resampling.LANCZOS
    footprint = np.hypot(*np.mgrid[-2:3, -2:3]) <= margin * aa
    for degree in range(-180, 180, 7):
        angle = degree * math.pi / 180
        head = _raster.translate((centre, centre), angle, length * aa)
        canvas = pil.new("L", (size, size), 0)
        draw.Draw(canvas).line([(centre, centre), (head[1], head[0])], fill=255, width=1)
        fine = np.asarray(canvas)
        line = np.asarray(pil.fromarray(fine).resize((2 * reach + 1,) * 2, lanczos))
        grown = ndimage.grey_dilation(fine, footprint=footprint, mode="constant", cval=0)
        halo = np.asarray(pil.fromarray(grown).resize((2 * reach + 1,) * 2, lanczos))
        dash = renderer.dash(margin, angle)
        assert np.array_equal(np.round(dash.line * 255), line), degree
        assert np.array_equal(np.round(dash.halo * 255), halo), degree
    for point in [(0, 0), (15, 16), (31, 30), (3, 28)]:
        gy, gx = np.ogrid[: 32 * aa, : 32 * aa]
        disk = ((gy - point[0] * aa) ** 2 + (gx - point[1] * aa) ** 2 <= (1.5 * aa) ** 2) * 255
        expected = np.asarray(pil.fromarray(disk.astype(np.uint8)).resize((32, 32), lanczos))
        ours = np.zeros((32, 32))
        patch, (oy, ox) = renderer.marker(point)
        ours[oy, ox] = patch
        assert np.array_equal(np.round(ours * 255), expected), point


def test_raster_primitives():
    weights = _raster.lanczos_weights(17, 9)
    assert weights.shape == (9, 17) and (abs(weights.sum(1) - (1 << 22)) <= 4).all()
    flat = np.full((17, 17), 255)
    assert (_raster.resample(flat, weights, weights) == 255).all()
    assert _raster.bytescale(np.array([[0.0, 2.0]])).tolist() == [[0, 255]]
    dys, dxs = _raster.disk_offsets(1)
    plus = [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    assert sorted(zip(dys.tolist(), dxs.tolist(), strict=True)) == plus
    dot = np.zeros((3, 3), dtype=bool)
    dot[0, 0] = True
    assert _raster.dilate_bool(dot, dys, dxs).sum() == 3  # clipped at the corner
    assert _raster.dilate(dot.astype(np.float32), dys, dxs).sum() == 3
    line = _raster.fine_line(9, 4, (4, 8), 1)
    assert line[4, 4:].tolist() == [255] * 5 and line.sum() == 5 * 255  # both ends drawn
    wide = _raster.fine_line(9, 4, (4, 8), 2)
    assert (wide > 0).sum() == 10  # two rows of five for an even pen


# ------------------------------------------------------------------ LRA's released files
def write_release(root, images, labels, batches=2):
    """LRA's layout: curv_contour_length_14/{imgs/<batch>/sample_<i>.png, metadata/<batch>.npy}."""
    pil = pytest.importorskip("PIL.Image")
    folder = root / "curv_contour_length_14"
    per_batch = math.ceil(len(images) / batches)
    for batch in range(batches):
        (folder / "imgs" / str(batch)).mkdir(parents=True, exist_ok=True)
        (folder / "metadata").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(batch * per_batch, min((batch + 1) * per_batch, len(images))):
            path = folder / "imgs" / str(batch) / f"sample_{i}.png"
            if images[i] is None:
                path.write_bytes(b"")  # an empty image file, as some of the release has
            else:
                pil.fromarray(images[i]).save(path)
            lines.append(f"imgs/{batch} sample_{i}.png {i} {labels[i]} 1.0 14 4 2 0.5 1 1")
        (folder / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
    return folder


def test_load_files_reads_the_release_layout(tmp_path):
    examples = task(seed=7).generate(20)
    images = [e.image for e in examples]
    labels = [e.label for e in examples]
    images[3] = None
    write_release(tmp_path, images, labels)
    pf = attnzoo.create("pathfinder", seed=2, n_train=100, n_val=100, n_test=100, data_dir=tmp_path)
    loaded = pf.load_files(tmp_path)
    sizes = [len(loaded[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 19  # the empty image is skipped
    assert sizes in ([15, 2, 2], [16, 1, 2], [16, 2, 1])  # 80/10/10 of the 20 entries
    originals = {e.image.tobytes(): e.label for e in examples}
    everything = loaded["train"] + loaded["val"] + loaded["test"]
    assert all(originals[e.image.tobytes()] == e.label for e in everything)
    assert len({e.image.tobytes() for e in everything}) == 19
    order = [e.image.tobytes() for e in loaded["train"]]
    assert order != [e.image.tobytes() for e in examples if e.image is not None][: len(order)]
    assert pf.load_files(tmp_path / "curv_contour_length_14") == loaded  # the folder itself
    splits = pf.splits()
    assert splits["train"].inputs.shape == (sizes[0], 1024)
    small = attnzoo.create("pathfinder", seed=2, n_train=3, n_val=1, n_test=1, data_dir=tmp_path)
    assert small.load_files(tmp_path)["train"] == loaded["train"][:3]  # reads only what it keeps


def test_load_files_errors(tmp_path):
    pf = Pathfinder(n_train=1, n_val=1, n_test=1, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="curv_contour_length_14"):
        pf.load_files(tmp_path)
    example = task().generate(1)[0]
    folder = write_release(tmp_path, [example.image] * 4, [0, 1, 0, 1], batches=1)
    meta = folder / "metadata" / "0.npy"
    meta.write_text(meta.read_text() + "imgs/0 sample_9.png 9 yes\n")
    with pytest.raises(ValueError, match=r"0\.npy:5: expected"):
        pf.load_files(tmp_path)
    meta.write_text(meta.read_text().replace("imgs/0 sample_9.png 9 yes", "imgs/0 gone.png 9 1"))
    big = Pathfinder(n_train=10, n_val=10, n_test=10, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"0\.npy:5: image .*gone\.png"):
        big.load_files(tmp_path)
    wrong = Pathfinder(n_train=10, n_val=10, n_test=10, resolution=64, data_dir=tmp_path)
    meta.write_text("imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1\n")
    with pytest.raises(ValueError, match="expected 64x64"):
        wrong.load_files(tmp_path)


def test_pool_max_pools_the_image_before_tokenising(tmp_path):
    task = attnzoo.create(
        "pathfinder", seed=0, n_train=4, n_val=2, n_test=2, pool=2, cache_dir=tmp_path
    )
    assert task.max_len == 256
    example = task.generate(1)[0]
    ids = torch.tensor(task.encode(example)).view(16, 16)
    image = torch.from_numpy(np.asarray(example.image).astype(np.int64))
    expected = torch.nn.functional.max_pool2d(image[None, None].float(), 2)[0, 0].long()
    assert torch.equal(ids, expected)
    with pytest.raises(ValueError, match="pool must divide resolution"):
        attnzoo.create("pathfinder", n_train=4, n_val=2, n_test=2, pool=3)
