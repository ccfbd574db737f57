"""The gallery behind ``attnzoo plot KIND``: every kind writes a PNG; errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from viz_helpers import assert_png

import attnzoo
from attnzoo.cli import main
from attnzoo.viz import KINDS, plot

VIT = ["--img-size", "32", "--patch-size", "8"]
TINY = {
    "attention": ["--length", "5", "--dim", "16", "--heads", "2"],
    "heads": ["--text", "the cat sat on the mat", "--dim", "16", "--heads", "2"],
    "rollout": VIT,
    "attention-distance": [*VIT, "--batch", "1"],
    "pos-similarity": VIT,
    "patch-filters": [*VIT, "--n", "4"],
    "sinusoidal": ["--length", "20", "--dim", "16", "--columns", "2,3"],
    "nadaraya-watson": ["--n-train", "20", "--epochs", "1"],
    "nadaraya-watson-weights": ["--n-train", "20", "--epochs", "1", "--which", "learned"],
    "mask": ["--name", "local", "--length", "12", "--window", "2"],
    "mechanisms": ["--names", "mha,reformer", "--length", "8", "--dim", "16", "--heads", "2"],
    "vision-maps": ["--names", "ccnet,gc", "--size", "8", "--channels", "16", "--row", "1"],
    "patterns": ["--length", "16"],
}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_kinds():
    assert list(KINDS) == list(TINY)


@pytest.mark.parametrize("kind", list(TINY))
def test_every_kind_writes_a_png(kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.png"
    code, out, err = run(capsys, "plot", kind, *TINY[kind], "--out", str(path))
    assert code == 0, err
    assert out.strip() == f"wrote {path}"
    assert_png(path)


def test_plot_help_lists_every_kind_with_its_summary(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plot", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for name, spec in KINDS.items():
        assert f"  {name} " in out and spec.summary in out


def test_kind_help_lists_its_flags(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plot", "rollout", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for flag in ("--model", "--img-size", "--patch-size", "--pos-embed", "--head-fusion", "--out"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["plot", "atention"], "did you mean 'attention'"),
        (["plot", "nope"], "KIND"),
        (["plot"], "KIND"),
        (["plot", "attention", "--length", "0"], "--length"),
        (["plot", "attention", "--windw", "3"], "--windw"),
        (["plot", "rollout", "--pos-embed", "rope"], "--pos-embed"),
        (["plot", "mask", "--name", "mha"], "--name"),
        (["plot", "mask", "--name", "sliding_window", "--length", "8"], "window"),
        (["plot", "mask", "--name", "local", "--stride", "2"], "--stride"),
        (["plot", "attention", "--mechanism", "fnet"], "has no attention weights"),
        (["plot", "attention", "--mechanism", "se"], "mechanism"),
        (["plot", "attention", "--mechanism", "mhaa"], "Did you mean 'mha'"),
        (["plot", "attention", "--text", "a b", "--length", "3"], "not both"),
        (["plot", "attention", "--heads", "2", "--dim", "16", "--head", "2"], "head"),
        (["plot", "mechanisms", "--names", "mha,fnet"], "has no attention weights"),
        (["plot", "mechanisms", "--names", "mha,se"], "names"),
        (["plot", "mechanisms", "--heads", "2", "--dim", "16", "--head", "2"], "head"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, needle, tmp_path):
    code, _out, err = run(capsys, *argv, "--out", str(tmp_path / "x.png"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_plot_in_python(tmp_path):
    fig = plot("mask", name="local", length=8, window=1, out=tmp_path / "m.png")
    assert_png(tmp_path / "m.png")
    assert fig.axes[0].get_title().splitlines()[:2] == ["local", "window=1"]
    fig = plot("attention", text="to be or not to be", dim=16, heads=2)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["to", "be", "or", "not", "to", "be"]
    with pytest.raises(ValueError, match="did you mean 'patterns'"):
        plot("pattern")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['lenght'\]"):
        plot("patterns", lenght=8)
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        plot("rollout", head_fusion="sum")


def test_local_attention_looks_closer_than_mha(standin_vit):
    def mean_distance(attention):
        fig = plot("attention-distance", img_size=32, patch_size=8, batch=1, attention=attention)
        axis = fig.axes[0]
        heights = [y for c in axis.collections for y in c.get_offsets()[:, 1]]
        return sum(heights) / len(heights), axis.lines[0].get_ydata()[0]

    dense, uniform = mean_distance("mha")
    local, _ = mean_distance("local")
    assert local < 0.9 * dense and dense <= uniform + 1e-6


def test_a_missing_matplotlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'attnzoo\[viz\]'"):
        attnzoo.viz.plot_mask("local", 4, window=1)


def test_import_does_not_load_matplotlib():
    code = "import sys, attnzoo.viz, attnzoo.cli; print('matplotlib' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "False"


def test_the_real_vit_has_the_attributes_the_gallery_reads():
    vit = attnzoo.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, pos_embed="sincos_2d", num_classes=10
    )
    assert tuple(vit.patch_embed.grid_size) == (4, 4)
    assert tuple(vit.patch_embed.patch_size) == (8, 8)
    assert vit.num_prefix_tokens == 1 and tuple(vit.pos_embed.shape) == (1, 17, 192)
    assert isinstance(vit.patch_embed.proj, torch.nn.Conv2d)
    assert [name for name, _ in vit.named_modules() if name.endswith(".attn")][:2] == [
        "blocks.0.attn",
        "blocks.1.attn",
    ]
