"""Papers cited by more than one registry entry."""

from attnzoo.registry import Paper

__all__ = ["BAHDANAU_2015", "VASWANI_2017"]

VASWANI_2017 = Paper(
    title="Attention Is All You Need",
    authors="Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin",
    year=2017,
    url="https://arxiv.org/abs/1706.03762",
)

BAHDANAU_2015 = Paper(
    title="Neural Machine Translation by Jointly Learning to Align and Translate",
    authors="Bahdanau, Cho, Bengio",
    year=2015,
    url="https://arxiv.org/abs/1409.0473",
)
