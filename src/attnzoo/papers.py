"""Papers cited by more than one registry entry."""

from attnzoo.registry import Paper

__all__ = ["BAHDANAU_2015", "DOSOVITSKIY_2021", "LRA_2021", "VASWANI_2017"]

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

DOSOVITSKIY_2021 = Paper(
    title="An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    authors="Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, "
    "Minderer, Heigold, Gelly, Uszkoreit, Houlsby",
    year=2021,
    url="https://arxiv.org/abs/2010.11929",
)

LRA_2021 = Paper(
    title="Long Range Arena: A Benchmark for Efficient Transformers",
    authors="Tay, Dehghani, Abnar, Shen, Bahri, Pham, Rao, Yang, Ruder, Metzler",
    year=2021,
    url="https://arxiv.org/abs/2011.04006",
)
