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
