"""A tiny task for the runner's tests: is token 3 more frequent than token 4?"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnzoo.arena.tasks.base import Task


@dataclass(frozen=True)
class ToyExample:
    tokens: tuple[int, ...]
    label: int


class ToyTask(Task):
    name = "toy"
    num_classes = 2

    def __init__(self, *, length: int = 12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = length

    @property
    def vocab_size(self) -> int:
        return 6

    @property
    def max_len(self) -> int:
        return self.length

    def options(self):
        return {"length": self.length}

    def generate(self, n):
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        while len(out) < n:
            size = int(torch.randint(self.length // 2, self.length + 1, (1,), generator=gen))
            tokens = torch.randint(1, 6, (size,), generator=gen).tolist()
            threes, fours = tokens.count(3), tokens.count(4)
            if threes != fours:
                out.append(ToyExample(tuple(tokens), int(threes > fours)))
        return out

    def encode(self, example):
        return list(example.tokens)
