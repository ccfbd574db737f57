"""``mechanism_weights``: the same tokens and projections for every panel, so differences are
the mechanisms' own; ``plot_mechanisms`` draws one panel per mechanism."""

from __future__ import annotations

import pytest
import torch

from attnzoo.viz import demo_mechanism_options, mechanism_weights, plot_mechanisms


def reference_weights(length: int, dim: int, heads: int, seed: int, scale: float) -> torch.Tensor:
    """Softmax attention weights computed from scratch with mha's projections, float64."""
    import attnzoo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = scale * torch.randn(1, length, dim)
        mha = attnzoo.create("mha", dim, num_heads=heads)
    x = x.double()[0]
    q = torch.nn.functional.linear(x, mha.q_proj.weight.double(), mha.q_proj.bias.double())
    k = torch.nn.functional.linear(x, mha.k_proj.weight.double(), mha.k_proj.bias.double())
    hd = dim // heads
    q = q.view(length, heads, hd).transpose(0, 1)  # (nh, L, hd)
    k = k.view(length, heads, hd).transpose(0, 1)  # (nh, L, hd)
    return (q @ k.transpose(-1, -2) / hd**0.5).softmax(-1)


def test_mha_panel_is_softmax_of_the_shared_tokens():
    weights = mechanism_weights(["mha"], length=12, dim=16, heads=2, seed=3, scale=2.0)
    expected = reference_weights(12, 16, 2, 3, 2.0)
    torch.testing.assert_close(weights["mha"].double(), expected, rtol=1e-5, atol=1e-6)


def test_local_with_a_window_over_the_sequence_is_the_mha_panel():
    w = mechanism_weights(
        ["mha", "local"], length=16, dim=16, heads=2, options={"local": {"window": 16}}
    )
    torch.testing.assert_close(w["local"], w["mha"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options", "atol"),
    [
        ("reformer", {"bucket_size": 16}, 1e-5),  # one bucket
        ("routing", {"num_clusters": 1}, 1e-5),  # one cluster
        ("nystrom", {"num_landmarks": 16, "conv_kernel_size": None}, 1e-2),  # pinv iterations
    ],
)
def test_degenerate_approximations_are_distributions(name, options, atol):
    w = mechanism_weights(["mha", name], length=16, dim=16, heads=2, options={name: options})
    assert w[name].shape == (2, 16, 16)
    rows = w[name].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), rtol=0, atol=atol)


def test_projections_are_copied_into_modules_that_draw_other_parameters_first():
    """Performer draws its random features and routing its centroids before their linear
    layers, so the same seed alone would not give them mha's projections."""
    import attnzoo
    from attnzoo.viz.compare import PROJECTIONS, _share_projections

    donor = attnzoo.create("mha", 16, num_heads=2)
    for name in ("performer", "routing"):
        module = attnzoo.create(name, 16, num_heads=2)
        assert not torch.equal(module.q_proj.weight, donor.q_proj.weight)
        _share_projections(donor, module)
        for projection in PROJECTIONS:
            mine, theirs = getattr(donor, projection), getattr(module, projection)
            assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)


def test_approximations_differ_from_softmax_and_linformer_reports_projected_keys():
    w = mechanism_weights(["mha", "local", "reformer", "linformer"], length=32)
    for name in ("local", "reformer"):
        assert (w[name] - w["mha"]).abs().max() > 1e-2, name
    assert w["local"][0, 0, 10:].abs().max() == 0  # window 4 around query 0
    assert w["linformer"].shape == (4, 32, 8)  # k = L / 4 projected rows


def test_demo_options_shrink_the_defaults():
    assert demo_mechanism_options("reformer", 32) == {"bucket_size": 4}
    assert demo_mechanism_options("local", 32) == {"window": 4}
    assert demo_mechanism_options("sinkhorn", 32) == {"seq_len": 32, "bucket_size": 4}
    assert demo_mechanism_options("mha", 32) == {}


def test_bad_arguments():
    with pytest.raises(TypeError, match="names must be a non-empty list"):
        mechanism_weights("mha")
    with pytest.raises(ValueError, match="no attention weights"):
        mechanism_weights(["fnet"])
    with pytest.raises(ValueError, match="names: 'se' is a vision name"):
        mechanism_weights(["se"])
    with pytest.raises(TypeError, match="weights must be a non-empty mapping"):
        plot_mechanisms({})
    with pytest.raises(ValueError, match="head must be < 1"):
        plot_mechanisms({"a": torch.eye(2)[None]}, head=1)


def test_plot_has_one_panel_per_mechanism():
    fig = plot_mechanisms({"a": torch.eye(3)[None], "b": torch.ones(1, 3, 2) / 2}, ncols=2)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["a", "b"]
    assert fig.axes[1].get_xlabel() == "projected keys"
