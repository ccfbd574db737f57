"""Vision modules on sequences and volumes: the N-D forms equal the 2-D module on a map with a
singleton axis, whose kernels reduce to their middle row (zero padding sees nothing else)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo

F64 = torch.float64


def copy_cbam(source, target, embed):
    """Copy ``source`` into ``target``; ``embed(w)`` places the spatial kernel in ``target``'s."""
    with torch.no_grad():
        target.mlp.load_state_dict(source.mlp.state_dict())
        target.spatial.conv.weight.zero_()
        embed(target.spatial.conv.weight, source.spatial.conv.weight)
        target.spatial.bn.load_state_dict(source.spatial.bn.state_dict())


def test_cbam_1d_equals_2d_on_a_one_row_map():
    torch.manual_seed(0)
    flat = attnzoo.create("cbam", 32, spatial_dims=1).double().eval()
    image = attnzoo.create("cbam", 32).double().eval()
    with torch.no_grad():
        flat.spatial.bn.running_mean.fill_(0.3), flat.spatial.bn.running_var.fill_(2.0)
    copy_cbam(flat, image, lambda big, small: big[:, :, 3].copy_(small))  # middle row of 7x7
    x = torch.randn(2, 32, 13, dtype=F64)
    assert flat.spatial_dims == (1,) and flat.spatial.conv.weight.shape == (1, 2, 7)
    assert_close(flat(x), image(x[:, :, None])[:, :, 0])


def test_cbam_3d_equals_2d_on_a_one_slice_volume():
    torch.manual_seed(0)
    volume = attnzoo.create("cbam", 16, spatial_dims=3, kernel_size=3).double().eval()
    image = attnzoo.create("cbam", 16, kernel_size=3).double().eval()
    copy_cbam(image, volume, lambda big, small: big[:, :, 1].copy_(small))  # middle slice
    x = torch.randn(2, 16, 5, 6, dtype=F64)
    assert_close(volume(x[:, :, None])[:, :, 0], image(x))
    cube = torch.randn(2, 16, 4, 5, 6, dtype=F64)
    assert volume(cube).shape == cube.shape


def test_cbam_instances_take_only_their_layout():
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3"):
        attnzoo.create("cbam", 32, spatial_dims=4)
    with pytest.raises(ValueError, match=r"^x must be \(B, C, L\), got shape \(2, 32, 4, 4\)"):
        attnzoo.create("cbam", 32, spatial_dims=1)(torch.randn(2, 32, 4, 4))


def test_coord_3d_gates_are_strip_pools_of_the_other_two_axes():
    torch.manual_seed(0)
    coord = attnzoo.create("coord", 16, spatial_dims=3).double().eval()
    x = torch.randn(2, 16, 3, 4, 5, dtype=F64)
    pools = [x.mean(dim=(3, 4)), x.mean(dim=(2, 4)), x.mean(dim=(2, 3))]  # (B, C, n) each
    f = coord.act(coord.bn1(coord.conv1(torch.cat(pools, dim=2)[..., None])))
    parts = torch.split(f, [3, 4, 5], dim=2)
    gates = [
        torch.sigmoid(conv(part))[..., 0]
        for conv, part in zip((coord.conv_d, coord.conv_h, coord.conv_w), parts, strict=True)
    ]
    want = (
        x * gates[0][..., None, None] * gates[1][:, :, None, :, None] * gates[2][:, :, None, None]
    )
    assert_close(coord(x), want)


def test_coord_1d_is_a_per_position_gate_and_2d_keeps_the_official_names():
    torch.manual_seed(0)
    coord = attnzoo.create("coord", 16, spatial_dims=1).double().eval()
    x = torch.randn(2, 16, 9, dtype=F64)
    f = coord.act(coord.bn1(coord.conv1(x[..., None])))
    assert_close(coord(x), x * torch.sigmoid(coord.conv_l(f))[..., 0])
    names = set(attnzoo.create("coord", 16).state_dict())
    assert {"conv_h.weight", "conv_w.weight"} <= names and not any("conv_d" in n for n in names)
