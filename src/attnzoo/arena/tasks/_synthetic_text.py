"""Semi-synthetic documents for the ``text`` and ``retrieval`` tasks: a lexicon and a composer.

**The lexicon** is VADER's (Hutto and Gilbert, "VADER: A Parsimonious Rule-based Model for
Sentiment Analysis of Social Media Text", ICWSM 2014): ``vaderSentiment/vader_lexicon.txt``,
which ships inside the ``vaderSentiment`` wheel (MIT licence; ``pip install vaderSentiment``).
Each line is ``word <TAB> mean valence <TAB> std <TAB> ten human ratings``; means lie in
[-4, 4] with one decimal, read here as integer tenths (``1.9`` -> ``19``) so that sums are exact.
Only the file is read; the package's code is never imported.

**The sentiment vocabulary** (:func:`sentiment_vocabulary`) is every lexicon entry that

1. is 3 or more lowercase ASCII letters (no emoticons, no ``don't``),
2. has ``|mean valence| >= 1.0`` (a clear polarity),
3. is not internet slang or an acronym (:data:`_SLANG`: ``lol``, ``rofl``, ``wtf``, ...) and
   contains none of the profanity, slur and sexual-violence stems of :data:`_OFFENSIVE_PARTS`,
4. is not a filler word or a negator (none of them is in the lexicon; this is checked),

ordered per polarity from the clearest (smallest rating std / ``|mean|``, then alphabetically).
``size`` keeps the first ``size // 2`` positive and negative words.

**The composer** (:func:`compose`) writes a document of exactly ``length`` bytes: lowercase words
separated by single spaces, where the caller's *units* (a sentiment word, ``"not good"``, a key
word) are inserted at uniformly random places between *filler* words (:data:`FILLERS`, neutral
words that are not in the lexicon). A filler ends a sentence with ``"."`` with probability 0.1
and the last token is always a filler ending in ``"."``; units never carry punctuation.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from attnzoo._checks import check_positive_int
from attnzoo.arena.datasets import _package_file

__all__ = [
    "FILLERS",
    "NEGATORS",
    "SentimentVocabulary",
    "compose",
    "lexicon_digest",
    "lexicon_path",
    "pair_labels",
    "resolve_lengths",
    "sentiment_vocabulary",
    "vader_lexicon",
]

LEXICON_PACKAGE = "vaderSentiment"
LEXICON_FILE = "vader_lexicon.txt"
MIN_VALENCE = 10  # |mean valence| >= 1.0, in tenths
PERIOD_RATE = 0.1  # probability that a filler word ends a sentence

# Neutral words (none is in the VADER lexicon), of every length from 1 to 10 letters so that a
# document can be filled to an exact byte count.
FILLERS: tuple[str, ...] = tuple(
    """
    a an of to in on at by as it is he we or up the and was for his her its one two set day car
    man act had has him who film plot cast role shot city town room door year hour week with from
    that this into over then when they them some each movie scene story actor music score sound
    light night house train river table after about while which their there camera script screen
    ending studio editor season series street window summer winter before during around across
    minutes picture setting subplot history village kitchen between through version message
    dialogue director producer sequence location costumes children building mountain audience
    character narrative landscape apartment afternoon interview furniture soundtrack screenplay
    characters background photograph television restaurant department
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATORS: tuple[str, ...] = ("not", "never")

_SLANG = frozenset(
    """
    aas aayf afu alol ambw aml atab awol ayor bfd bfe bff bffn bsod btd cwot doa fcol ffs fkm
    foaf ftw fud fwb gga gla hagd hagn hago hak haha hhoj hugz ilu iluaaf ily iyq jhomf kewl kfy
    kia kmuf laoj lawl leet lmao lmfao lmso lol lolz lts lulz lya lyb lyl lylab lylas lylb mia mml
    mlm mofo muah mwah nbd nfc nfw nimy nitl nme ntmu pita prblm prblms ptl rofl roflmao rotfl
    rotflmao rotflmfao rotflol rotgl sete sfete sgtm smh sok swak sux tard tgif thks thx tia tnx
    txs tyvm ugh urw vbg vbs vip vwd vwp woo woot wtf wtg wth xlnt xoxo xqzt yep yolo yvw ywia
    zzz gratz
    """.split()  # noqa: SIM905
)
_OFFENSIVE_PARTS = (
    "fuck", "shit", "bitch", "cunt", "whore", "slut", "nigg", "fag", "cocksuck", "twat", "wank",
    "douche", "bastard", "piss", "asshole", "dumbass", "badass", "jackass", "motherf", "dick",
    "rape", "raping", "rapist", "retard", "crap", "damn", "scumbag",
)  # fmt: skip
_OFFENSIVE_WORDS = frozenset({"ass", "hell", "prick"})
_WORD = re.compile(r"[a-z]{3,}")


def lexicon_path() -> Path:
    """Path of ``vader_lexicon.txt`` inside the installed ``vaderSentiment`` package."""
    return _package_file(LEXICON_PACKAGE, LEXICON_FILE, "data")


@functools.lru_cache(maxsize=1)
def _read_lexicon() -> tuple[dict[str, int], dict[str, float], str]:
    raw = lexicon_path().read_bytes()
    valence: dict[str, int] = {}
    spread: dict[str, float] = {}
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"{lexicon_path()} line {number}: expected word, mean, std")
        valence[fields[0]] = round(float(fields[1]) * 10)
        spread[fields[0]] = float(fields[2])
    return valence, spread, hashlib.sha256(raw).hexdigest()[:12]


def vader_lexicon() -> dict[str, int]:
    """Every entry of the VADER lexicon: word -> mean valence in integer tenths (a copy).

    The file lists 14 entries twice (``lol``, ``sob``, ...); the last line wins, as in VADER's own
    reader.

    Example:
        >>> lexicon = vader_lexicon()
        >>> lexicon["good"], lexicon["terrible"], len(lexicon)
        (19, -21, 7506)
    """
    return dict(_read_lexicon()[0])


def lexicon_digest() -> str:
    """First 12 hex digits of the lexicon file's SHA-256 (part of the tasks' cache keys)."""
    return _read_lexicon()[2]


class SentimentVocabulary(NamedTuple):
    """The sentiment words of a task, clearest first, and their valences in tenths."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    valence: dict[str, int]


def _allowed(word: str, valence: int) -> bool:
    if not _WORD.fullmatch(word) or abs(valence) < MIN_VALENCE:
        return False
    if word in _SLANG or word in _OFFENSIVE_WORDS or word in FILLERS or word in NEGATORS:
        return False
    return not any(part in word for part in _OFFENSIVE_PARTS)


@functools.lru_cache(maxsize=16)
def sentiment_vocabulary(size: int | None = None) -> SentimentVocabulary:
    """The filtered, ordered sentiment words (module docstring); ``size`` keeps the clearest.

    Args:
        size: Even number of words, half positive and half negative; None keeps all of them.

    Example:
        >>> vocab = sentiment_vocabulary(4)
        >>> len(vocab.positive), len(vocab.negative), [vocab.valence[w] for w in vocab.positive]
        (2, 2, [...])
    """
    valence, spread, _ = _read_lexicon()
    words = [w for w, v in valence.items() if _allowed(w, v)]
    words.sort(key=lambda w: (spread[w] / abs(valence[w]) * 10, w))
    positive = tuple(w for w in words if valence[w] > 0)
    negative = tuple(w for w in words if valence[w] < 0)
    if size is not None:
        check_positive_int("lexicon_size", size, minimum=2)
        limit = 2 * min(len(positive), len(negative))
        if size % 2 or size > limit:
            raise ValueError(
                f"lexicon_size must be an even int from 2 to {limit} (half positive, half "
                f"negative words) or None for all {len(words)} words, got {size}"
            )
        positive, negative = positive[: size // 2], negative[: size // 2]
    return SentimentVocabulary(positive, negative, {w: valence[w] for w in positive + negative})


def resolve_lengths(min_length: int | None, max_length: int, *, floor: int) -> tuple[int, int]:
    """Checked ``(min_length, max_length)`` in bytes; ``min_length=None`` means half the max."""
    max_length = check_positive_int("max_length", max_length, minimum=floor)
    if min_length is None:
        min_length = max(floor, max_length // 2)
    min_length = check_positive_int("min_length", min_length, minimum=floor)
    if min_length > max_length:
        raise ValueError(
            f"min_length must be <= max_length, got min_length={min_length} and "
            f"max_length={max_length}"
        )
    return min_length, max_length


def pair_labels(rng: np.random.Generator) -> Iterator[int]:
    """Endless labels in shuffled pairs ``(0, 1)`` or ``(1, 0)``.

    Every prefix of even length is exactly balanced.
    """
    while True:
        first = int(rng.integers(2))
        yield first
        yield 1 - first


_PLAIN = FILLERS
_DOTTED = tuple(w + "." for w in FILLERS)
_COST = np.array([len(w) + 1 for w in FILLERS])  # a word and the space after it
_MAX_FILLER = max(len(w) for w in FILLERS)
_BY_LENGTH = {n: tuple(w for w in FILLERS if len(w) == n) for n in range(1, _MAX_FILLER + 1)}


def _filler_of_length(rng: np.random.Generator, n: int) -> str:
    choices = _BY_LENGTH[n]
    return choices[int(rng.integers(len(choices)))]


def compose(rng: np.random.Generator, length: int, units: Sequence[str]) -> str:
    """A document of exactly ``length`` bytes holding ``units`` between filler words.

    The units keep their order; each is inserted at a uniformly random place between the
    fillers (module docstring).

    Example:
        >>> text = compose(np.random.default_rng(0), 60, ["great", "not dull"])
        >>> len(text.encode()), text.endswith("."), text.index("great") < text.index("not dull")
        (60, True, True)
    """
    unit_cost = sum(len(u) + 1 for u in units)
    budget = length - unit_cost + 1  # bytes of the fillers, each with the space that follows it
    if budget < 3:
        raise ValueError(
            f"a document of {length} bytes cannot hold {len(units)} inserted words "
            f"({unit_cost} bytes) and a closing filler: make it longer or insert fewer words"
        )
    # random body fillers while at least 3 bytes are left for the closing "word."
    target = budget - 3
    count = target // 2 + 2  # enough draws: the cheapest filler costs 2 bytes
    index = rng.integers(0, len(FILLERS), size=count)
    dotted = rng.random(count) < PERIOD_RATE
    cum = np.cumsum(_COST[index] + dotted)
    body = int(np.searchsorted(cum, target, side="right"))
    left = budget - (int(cum[body - 1]) if body else 0)  # 3 <= left <= _MAX_FILLER + 4
    fillers = [
        (_DOTTED if d else _PLAIN)[i]
        for i, d in zip(index[:body].tolist(), dotted[:body].tolist(), strict=True)
    ]
    if left - 2 > _MAX_FILLER:  # too long for one closing word: add a plain one first
        fillers.append(_filler_of_length(rng, left - 5))
        left = 4
    fillers.append(_filler_of_length(rng, left - 2) + ".")
    gaps = np.sort(rng.integers(0, len(fillers), size=len(units))).tolist()  # before filler g
    out: list[str] = []
    unit = 0
    for position, filler in enumerate(fillers):
        while unit < len(units) and gaps[unit] == position:
            out.append(units[unit])
            unit += 1
        out.append(filler)
    return " ".join(out)
