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


def zpool_gate(gate, view):
    """``view * sigmoid(BN(conv([max; mean] over dim 1))))``, written out."""
    pooled = torch.cat([view.amax(1, keepdim=True), view.mean(1, keepdim=True)], dim=1)
    return view * torch.sigmoid(gate.bn(gate.conv(pooled)))


@pytest.mark.parametrize("dims", [1, 3])
def test_triplet_nd_averages_one_gate_per_pooled_axis(dims):
    torch.manual_seed(0)
    triplet = attnzoo.create("triplet", 8, spatial_dims=dims, kernel_size=3).double().eval()
    x = torch.randn(2, 8, *((9,) if dims == 1 else (3, 4, 5)), dtype=F64)
    branches = []
    for pooled in range(1, dims + 2):  # pool each of C and the spatial axes in turn
        order = [0, pooled] + [d for d in range(1, dims + 2) if d != pooled]
        inverse = [order.index(i) for i in range(len(order))]
        name = {1: {2: "c", 1: "l"}, 3: {2: "chw", 3: "cdw", 4: "cdh", 1: "dhw"}}[dims][pooled]
        branches.append(zpool_gate(getattr(triplet, name), x.permute(*order)).permute(*inverse))
    assert_close(triplet(x), sum(branches) / len(branches))
    lean = attnzoo.create("triplet", 8, spatial_dims=dims, no_spatial=True)
    assert len(lean.views) == dims and lean(x.float()).shape == x.shape


def test_stn_warps_sequences_and_volumes_by_their_affine_maps():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 6, dtype=F64)
    volume = attnzoo.create("stn", 3, spatial_dims=3).double().eval()
    assert_close(volume(x), x, atol=1e-6, rtol=0)  # starts at the identity
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64))  # x_s = -x_t on the W axis
    with torch.no_grad():
        volume.fc_loc.fc2.bias.copy_(torch.cat([flip, torch.zeros(3, 1, dtype=F64)], 1).flatten())
    assert_close(volume(x), x.flip(-1), atol=1e-6, rtol=0)  # align_corners=False: exact flip
    sequence = attnzoo.create("stn", 3, spatial_dims=1).double().eval()
    s = torch.randn(2, 3, 10, dtype=F64)
    assert_close(sequence(s), s, atol=1e-6, rtol=0)
    with torch.no_grad():
        sequence.fc_loc.fc2.bias.copy_(torch.tensor([-1.0, 0.0], dtype=F64))  # a = -1, b = 0
    assert_close(sequence(s), s.flip(-1), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="bicubic"):
        attnzoo.create("stn", 3, spatial_dims=3, mode="bicubic")


def test_bam_1d_equals_2d_on_a_one_row_map():
    torch.manual_seed(0)
    flat = attnzoo.create("bam", 64, spatial_dims=1).double().eval()
    image = attnzoo.create("bam", 64).double().eval()
    source, target = flat.state_dict(), image.state_dict()
    with torch.no_grad():
        for key, value in source.items():
            if value.dim() == 3:  # a 1-D conv kernel (out, in, k): the middle row of the 2-D one
                target[key].zero_()
                target[key][:, :, value.shape[-1] // 2] = value
            else:
                target[key].copy_(value)
    image.load_state_dict(target)
    x = torch.randn(2, 64, 17, dtype=F64)
    assert_close(flat(x), image(x[:, :, None])[:, :, 0])
    volume = attnzoo.create("bam", 64, spatial_dims=3)
    assert volume(torch.randn(2, 64, 3, 4, 5)).shape == (2, 64, 3, 4, 5)
