"""The survey's first example: Nadaraya–Watson kernel regression vs average pooling.

f(x) = 2 sin(x) + x^0.8 with 50 noisy training points; Gaussian attention pooling fits far better
than the average, and learning the bandwidth (the "parametric" version) fits better still.
"""

import torch

import attnzoo
from attnzoo.functional import average_pooling, nadaraya_watson

gen = torch.Generator().manual_seed(0)
x_train, _ = torch.sort(torch.rand(50, generator=gen) * 5)
y_train = 2 * torch.sin(x_train) + x_train**0.8 + torch.normal(0.0, 0.5, (50,), generator=gen)
x_test = torch.arange(0, 5, 0.1)
y_truth = 2 * torch.sin(x_test) + x_test**0.8


def mse(pred):
    return ((pred - y_truth) ** 2).mean().item()


print(f"average pooling    MSE {mse(average_pooling(x_test, x_train, y_train)):.3f}")
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
    learned = nw(x_test.view(1, -1, 1), keys, values=values)[0, :, 0]
print(f"parametric (learned w) MSE {mse(learned):.3f}")
