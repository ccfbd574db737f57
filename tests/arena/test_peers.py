"""Peer-package baselines of ``attnzoo bench speed --peers``: they build, run and compute what
their attnzoo counterpart computes at the same configuration (where the maths coincide).

``make test`` installs the peer packages with ``--no-deps`` (see Makefile); a test skips, saying
so, only where a package is absent.
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo.arena.peers import PEERS, build_peer
from attnzoo.cli import main

DIM, HEADS, LENGTH = 64, 4, 128
MODULES = {
    "local-attention": "local_attention",
    "linformer": "linformer",
    "performer-pytorch": "performer_pytorch",
    "reformer-pytorch": "reformer_pytorch",
    "nystrom-attention": "nystrom_attention",
    "linear-attention-transformer": "linear_attention_transformer",
    "sinkhorn-transformer": "sinkhorn_transformer",
}


def need(package):
    if package is not None:
        try:
            importlib.import_module(MODULES[package])
        except ImportError as error:
            pytest.skip(f"{package} is not installed ({error}); make test installs it")


OPTIONS = {
    "peer_local": {"window": 16},
    "peer_linformer": {"k": 32},
    "peer_performer": {"nb_features": 32},
    "peer_reformer": {"bucket_size": 16},
    "peer_nystrom": {"num_landmarks": 16},
    "peer_sinkhorn": {"bucket_size": 16},
}


@pytest.mark.parametrize("name", list(PEERS))
def test_every_peer_builds_and_maps_b_l_c(name):
    need(PEERS[name].package)
    torch.manual_seed(0)
    module = build_peer(name, DIM, HEADS, LENGTH, False, OPTIONS.get(name, {})).eval()
    x = torch.randn(2, LENGTH, DIM)
    with torch.no_grad():
        out = module(x)
    assert out.shape == (2, LENGTH, DIM) and torch.isfinite(out).all()
    assert PEERS[name].mechanism in attnzoo.list_names()


def copy_projections(ours, q, k, v, out):
    with torch.no_grad():
        q.weight.copy_(ours.q_proj.weight), q.bias.copy_(ours.q_proj.bias)
        k.weight.copy_(ours.k_proj.weight), k.bias.copy_(ours.k_proj.bias)
        v.weight.copy_(ours.v_proj.weight), v.bias.copy_(ours.v_proj.bias)
        out.weight.copy_(ours.out_proj.weight), out.bias.copy_(ours.out_proj.bias)


@pytest.mark.parametrize("causal", [False, True])
def test_peer_local_is_attnzoo_local_at_the_same_window(causal):
    need("local-attention")
    torch.manual_seed(0)
    ours = attnzoo.create("local", DIM, num_heads=HEADS, window=16).eval()
    peer = build_peer("peer_local", DIM, HEADS, LENGTH, causal, {"window": 16}).eval()
    copy_projections(ours, peer.q_proj, peer.k_proj, peer.v_proj, peer.out_proj)
    x = torch.randn(2, LENGTH, DIM)
    with torch.no_grad():
        assert_close(peer(x), ours(x, is_causal=causal), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_fused_is_mha(causal):
    torch.manual_seed(0)
    ours = attnzoo.create("mha", DIM, num_heads=HEADS).eval()
    peer = build_peer("sdpa_fused", DIM, HEADS, LENGTH, causal, {}).eval()
    with torch.no_grad():
        peer.qkv.weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        peer.qkv.bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        peer.out_proj.load_state_dict(ours.out_proj.state_dict())
        x = torch.randn(2, LENGTH, DIM)
        assert_close(peer(x), ours(x, is_causal=causal), atol=1e-5, rtol=1e-4)


def test_missing_package_names_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_local(name, *args, **kwargs):
        if name.startswith("local_attention"):
            raise ImportError("No module named 'local_attention'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_local)
    monkeypatch.delitem(__import__("sys").modules, "local_attention", raising=False)
    with pytest.raises(ImportError, match=r"local-attention.*pip install"):
        build_peer("peer_local", DIM, HEADS, LENGTH, False, {})


def test_bench_speed_peers_prints_the_side_by_side_table(capsys, tmp_path):
    need("local-attention")
    out = tmp_path / "speed.json"
    code = main(
        [
            "bench", "speed", "--names", "mha,local", "--lengths", "64", "--repeats", "1",
            "--threads", "1", "--dim", "32", "--heads", "2", "--peers",
            "--option", "local:window=8", "--output", str(out),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "| mha | sdpa_fused | 64 |" in text and "| local | peer_local | 64 |" in text
    payload = json.loads(out.read_text())
    assert payload["config"]["options"]["peer_local"] == {"window": 8}  # shared configuration
    assert {r["name"] for r in payload["results"]} == {"mha", "local", "sdpa_fused", "peer_local"}


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_qkv_bias_states_the_peer_projections(name):
    """``Peer.qkv_bias`` is what the peer's q, k, v projections have: only the output
    projection carries a bias in every package (all four in the PyTorch-built baselines)."""
    need(PEERS[name].package)
    module = build_peer(name, DIM, HEADS, LENGTH, False, OPTIONS.get(name, {}))
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    biased = [m for m in linears if m.bias is not None]
    if PEERS[name].qkv_bias:
        assert len(biased) == len(linears)
    else:
        assert len(biased) == 1 and biased[0].in_features == DIM  # the output projection


def test_bench_speed_peers_builds_attnzoo_with_the_peer_projections(capsys, tmp_path):
    need("linear-attention-transformer")
    need("performer-pytorch")
    out = tmp_path / "speed.json"
    args = ["bench", "speed", "--names", "linear,performer,mha", "--lengths", "32"]
    args += ["--repeats", "1", "--threads", "1", "--dim", "32", "--heads", "2", "--peers"]
    args += ["--option", "performer:qkv_bias=True", "--option", "performer:nb_features=8"]
    assert main([*args, "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "# --peers: linear built with qkv_bias=False" in text
    options = json.loads(out.read_text())["config"]["options"]
    assert options["linear"] == {"qkv_bias": False}  # the peer's q, k, v have no bias
    assert options["performer"] == {"qkv_bias": True, "nb_features": 8}  # the user's choice
    assert options["peer_performer"] == {"nb_features": 8}  # the package fixes its projections
    assert options["mha"] == {"qkv_bias": True}  # sdpa_fused's projections have biases
