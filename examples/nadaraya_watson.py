"""The survey's first example: Nadaraya–Watson kernel regression vs average pooling.

f(x) = 2 sin(x) + x^0.8 with 50 noisy training points; Gaussian attention pooling fits far better
than the average, and learning the bandwidth (the "parametric" version) fits better still.
Draws nadaraya_watson_fit.png (the fits) and nadaraya_watson_weights.png (the attention
weights) into --out-dir:

    python examples/nadaraya_watson.py --out-dir docs/images
"""

import argparse
from pathlib import Path

import torch

import attnzoo
from attnzoo.functional import average_pooling, nadaraya_watson
from attnzoo.viz import plot_nadaraya_watson, plot_nadaraya_watson_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="accepted for the tests (already quick)")
parser.add_argument("--out-dir", default=".", help="folder of the two PNGs")
args = parser.parse_args()
out_dir = Path(args.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)

gen = torch.Generator().manual_seed(0)
x_train, _ = torch.sort(torch.rand(50, generator=gen) * 5)
y_train = 2 * torch.sin(x_train) + x_train**0.8 + torch.normal(0.0, 0.5, (50,), generator=gen)
x_test = torch.arange(0, 5, 0.1)
y_truth = 2 * torch.sin(x_test) + x_test**0.8


def mse(pred):
    return ((pred - y_truth) ** 2).mean().item()


average = average_pooling(x_test, x_train, y_train)
print(f"average pooling    MSE {mse(average):.3f}")
pred, weights = nadaraya_watson(x_test, x_train, y_train)
print(f"gaussian (h = 1)   MSE {mse(pred):.3f}")

nw = attnzoo.create("nadaraya_watson", 1)  # learnable inverse bandwidth w
keys, values = x_train.view(1, 50, 1), y_train.view(1, 50, 1)
leave_one_out = ~torch.eye(50, dtype=torch.bool)[None]
optimizer = torch.optim.SGD(nw.parameters(), lr=0.5)
for epoch in range(5):
    optimizer.zero_grad()
    loss = ((nw(keys, keys, values=values, mask=leave_one_out) - values) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"epoch {epoch + 1}: leave-one-out loss {loss.item():.3f}, w = {nw.w.item():.3f}")
with torch.no_grad():
    learned, learned_weights = nw(x_test.view(1, -1, 1), keys, values=values, need_weights=True)
learned = learned[0, :, 0]
print(f"parametric (learned w) MSE {mse(learned):.3f}")

predictions = {
    "average": average,
    "gaussian (h=1)": pred,
    f"learned (w={nw.w.item():.2f})": learned,
}
fit = out_dir / "nadaraya_watson_fit.png"
plot_nadaraya_watson(x_train, y_train, x_test, y_truth, predictions, out=fit)
heat = out_dir / "nadaraya_watson_weights.png"
plot_nadaraya_watson_weights(
    learned_weights[0, 0], x_test=x_test, x_train=x_train, title="learned weights", out=heat
)
print(f"wrote {fit} and {heat}")
