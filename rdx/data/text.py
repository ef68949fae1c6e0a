"""Text cleaning shared by the real corpora: tokenisation, sentence splitting, AG News repair.

AG News text := the sentences of the description (the title is a headline, not a
sentence): ``\\`` escapes and the HTML-entity debris of the release (`` #39;``, ``quot;``,
``&lt;TICKER&gt;``) are repaired or removed, a leading dateline/source (``LONDON
(Reuters) -``, ``AP -``) is stripped, then the description is split into sentences;
fragments shorter than 4 tokens (split debris) are dropped.
"""

from __future__ import annotations

import html
import re

_ENTITY = re.compile(r"[ &]?(?:#(\d+)|(quot|amp|lt|gt|apos|nbsp|hellip|mdash|ndash));")
_DATELINE = re.compile(r"^(?:[A-Z0-9][\w.,'&/]*\s+){0,6}?(?:\([^)]{1,40}\)\s*)?(?:--?|_)\s+")
_ABBREVIATIONS = (
    "[A-Z] Mr Mrs Ms Dr St Co Inc Corp Ltd Bros Gov Sen Rep Gen Col Lt Sgt Capt Prof Jr Sr No"
    " vs Jan Feb Aug Sep Sept Oct Nov Dec"
)
_NOT_END = "".join(rf"(?<!\b{a}\.)" for a in _ABBREVIATIONS.split())
# A sentence ends at . ! ? (plus closing quotes) before a capital, except after abbreviations.
_SENTENCE_END = re.compile(rf"(?<=[.!?]){_NOT_END}[\"')]*\s+(?=[\"'(]?[A-Z0-9])")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-.]\w+)*|[^\w\s]")


# Caps on raw text, applied before any regex or tokenizer sees it: one 200 MB "word" passes
# dataset.max_words (it is one word) and the tokenizer's training never ends on it (a
# 400k-character word took > 90 s). The longest line of the shared Yelp files is 107
# characters, the longest AG News description 830 and its longest word 136: the caps are
# far above real text.
MAX_LINE_CHARS = 10_000
MAX_WORD_CHARS = 1_000
_NEWLINE = re.compile(r"\r\n|\r|\n")


def lines(text: str) -> list[str]:
    """A file's lines, ended by \\n, \\r\\n or \\r only: str.splitlines also breaks at a
    form feed, NEL (U+0085) and U+2028/U+2029, making one sentence two."""
    out = _NEWLINE.split(text)
    return out[:-1] if out and out[-1] == "" else out


def too_long(text: str) -> bool:
    """Whether raw text is beyond the caps (MAX_LINE_CHARS, MAX_WORD_CHARS)."""
    return len(text) > MAX_LINE_CHARS or max(map(len, text.split()), default=0) > MAX_WORD_CHARS


def warn_too_long(log, where: str, n: int) -> None:
    if n:
        log.warning(
            "%s: %d line(s) longer than %d characters or holding a word longer than %d "
            "dropped (not text a sentence model can learn from)",
            where,
            n,
            MAX_LINE_CHARS,
            MAX_WORD_CHARS,
        )


def _entity(m: re.Match) -> str:
    if m.group(1):
        code = int(m.group(1))  # 128-159 are Windows-1252 punctuation in this release
        return bytes([code]).decode("cp1252") if 128 <= code < 160 else chr(code)
    return html.unescape(f"&{m.group(2)};")


def tokenize(text: str) -> str:
    """Lower-case and split off punctuation and clitics ("didn't" -> "did n't")."""
    text = text.lower().replace("\u2019", "'")
    return " ".join(_TOKEN.findall(re.sub(r"(\w)n't\b", r"\1 n't", text)))


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Tokenised sentences of raw text; fragments of fewer than ``min_words`` tokens dropped."""
    out = [tokenize(s) for s in _SENTENCE_END.split(text)]
    return [s for s in out if len(s.split()) >= min_words]


def clean_agnews(text: str) -> str:
    """Repair AG News escapes and entities; drop HTML tags, tickers and leading datelines."""
    text = re.sub(r"\\([$\"&'(),.])", r"\1", text).replace("\\", " ")  # "\" was a newline
    text = _ENTITY.sub(_entity, text)
    text = re.sub(r"<[^>]*>", " ", text)  # tickers such as <TXN.N> and leftover HTML
    text = " ".join(text.split())
    for _ in range(2):  # "SPACE.com - TORONTO, Canada -- A second team ..."
        text = _DATELINE.sub("", text, count=1)
    return text


def agnews_sentences(description: str) -> list[str]:
    return split_sentences(clean_agnews(description))
