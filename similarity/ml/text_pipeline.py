"""Text pipeline: product titles and search queries -> normalised tokens for lexical matching.

Pure Python (jieba for Chinese segmentation), imports no Django; it runs in whichever process
calls it: the web process for queries, the worker for catalog text. Both sides must use the
same pipeline settings, because tokens only match when they are produced the same way.

Steps, in order:

1. Cut the input at ``max_chars`` (a 1 MB title costs as much as a 2000-character one),
   unescape HTML entities, apply Unicode NFKC (full-width ``ＩＰＨＯＮＥ１５`` -> ``IPHONE15``),
   lower-case (optional), turn control characters into spaces, drop zero-width characters,
   collapse whitespace.
2. Words from the user dictionaries that contain non-Chinese characters (``华为mate60``,
   ``q币``) are cut out first and kept whole.
3. The rest is scanned left to right for model numbers, number+unit tokens, runs of
   letters/digits, and runs of Chinese characters. Chinese runs are segmented by a private
   ``jieba.Tokenizer`` that also knows the user dictionaries. Anything else (punctuation,
   symbols, emoji) separates tokens and is dropped.
4. Stop words (``resources/stopwords_*.txt`` unless overridden), single Latin letters and
   punctuation-only tokens are dropped. Single Chinese characters are kept (鞋, 茶, 米).

Canonical form of model numbers and units: inner whitespace is removed, so no token contains
whitespace and "iPhone 15" == "iPhone15" -> ``iphone15``; "RTX 4090" -> ``rtx4090``, "256 GB"
-> ``256gb``, "15 英寸" -> ``15英寸``, "2.5kg" -> ``2.5kg``. A word followed by a bare number of
up to 4 digits is joined ("mate 60" -> ``mate60``, also "size 42" -> ``size42``) unless the word
is a stop word ("pack of 2" -> ``pack``, ``2``), the number carries a unit ("max 256gb" ->
``max``, ``256gb``) or goes on with "-" or "/" ("hem 7133-a"). Single-letter units (g, l, m, t,
w) join only without a space ("64g", not "3 t-shirts").

User dictionaries use jieba's format: one word per line, optionally followed by a frequency and
a POS tag separated by spaces; blank lines and lines starting with ``#`` are skipped. Lines with
frequency 0 (jieba's "never cut this out") are ignored, because jieba implements them through
process-global state that would leak between pipelines.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import jieba

__all__ = ["TextPipeline", "default_pipeline", "tokenize", "RESOURCES_DIR"]

RESOURCES_DIR = Path(__file__).resolve().parent / "resources"
DEFAULT_USER_DICT = RESOURCES_DIR / "userdict_zh.txt"
DEFAULT_STOP_WORD_FILES = (RESOURCES_DIR / "stopwords_zh.txt", RESOURCES_DIR / "stopwords_en.txt")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_UNITS = (
    "英寸 寸 千克 毫升 毫安 个月 小时 分钟 日元 美元 美金 米 克 斤 升 瓦 片 包 支 个 件 只 盒 袋 瓶 罐"
    " 元 天 粒 颗 套 双 箱 条 张 台"
).split()
_LETTER_UNITS = "mah gb tb mb kg mm cm ml hz g t l m w".split()
_SPACED_LETTER_UNITS = [u for u in _LETTER_UNITS if len(u) > 1]


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


_CJK_U, _LETTER_U, _SPACED_U = map(_alternation, (_CJK_UNITS, _LETTER_UNITS, _SPACED_LETTER_UNITS))
_NUMBER = r"\d+(?:\.\d+)?"
_WORDCHAR = rf"[^\W_{_HAN}]"
_TOKEN_RE = re.compile(
    # "iphone 15": a word then a bare number of up to 4 digits (not "max 256gb", "iphone
    # 15英寸", "beyond 150013" or "timewel 1100-n2017", where the number stands on its own).
    rf"(?<![a-z0-9])(?P<model>[a-z]+) (?P<model_no>\d{{1,4}})"
    rf"(?![a-z0-9.]|[-/][a-z0-9]| ?(?:{_CJK_U})| (?:{_SPACED_U})(?![a-z0-9]))"
    # "64g", "256 gb", "15英寸", "2.5kg".
    rf"|(?P<unit>(?<![a-z0-9.]){_NUMBER}"
    rf"(?: ?(?:{_CJK_U})|(?:{_LETTER_U})(?![a-z0-9])| (?:{_SPACED_U})(?![a-z0-9])))"
    rf"|(?P<word>{_WORDCHAR}+(?:\.\d+{_WORDCHAR}*)*)"
    rf"|(?P<han>[{_HAN}]+)",
    re.IGNORECASE,
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE_RE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_WHITESPACE_RE = re.compile(r"\s+")
# NFKC turns "™" into "TM", which would glue onto the brand before it ("Apple™" -> "appletm").
_MARKS = str.maketrans({"\u2122": " ", "\u2120": " "})
_USER_DICT_LINE_RE = re.compile(r"^(.+?)(?: (\d+))?(?: ([a-z]+))?$")
_HAN_ONLY_RE = re.compile(rf"[{_HAN}]+")
_HAS_WORDCHAR_RE = re.compile(r"[^\W_]")


def _normalize(text: str, lowercase: bool = True) -> str:
    """Apply NFKC, optional lower-casing, control-character removal and whitespace collapsing."""
    text = unicodedata.normalize("NFKC", html.unescape(text).translate(_MARKS))
    if lowercase:
        text = text.lower()
    text = _INVISIBLE_RE.sub("", _CONTROL_RE.sub(" ", text))
    return _WHITESPACE_RE.sub(" ", text).strip()


def _read_lines(path: str | os.PathLike[str]) -> list[str]:
    with open(path, encoding="utf-8-sig") as handle:
        lines = (line.strip() for line in handle)
        return [line for line in lines if line and not line.startswith("#")]


def _read_user_dict(path: str | os.PathLike[str]) -> list[tuple[str, int | None]]:
    entries = []
    for line in _read_lines(path):
        word, freq, _tag = _USER_DICT_LINE_RE.match(line).groups()
        if freq is None or int(freq) > 0:
            entries.append((word, int(freq) if freq else None))
    return entries


def _quiet_jieba() -> None:
    """Stop jieba printing its dictionary-loading chatter to stderr."""
    logger = logging.getLogger("jieba")
    if logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)


def _phrase_pattern(phrase: str) -> str:
    """Match a user word whole, with an optional space where the script changes."""
    def kind(ch: str) -> str:
        return "han" if _HAN_ONLY_RE.match(ch) else "digit" if ch.isdigit() else "other"

    body = re.escape(phrase[0])
    for prev, ch in zip(phrase, phrase[1:]):
        if ch != " ":
            gap = prev == " " or kind(prev) != kind(ch)
            body += (r"\s?" if gap else "") + re.escape(ch)
    first, last = phrase[0], phrase[-1]
    before = "(?<![a-z])" if first.isascii() and first.isalpha() else ""
    before = "(?<![a-z0-9.])" if first.isascii() and first.isdigit() else before
    after = "(?![a-z])" if last.isascii() and last.isalpha() else ""
    after = "(?![0-9])" if last.isascii() and last.isdigit() else after
    return before + body + after


@functools.lru_cache(maxsize=1)
def _base_dictionary() -> tuple[dict[str, int], int]:
    """Load jieba's default dictionary once per process (about 1.6 s); callers copy it."""
    _quiet_jieba()
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


class TextPipeline:
    """Turn a product title or query into a deterministic list of normalised tokens.

    Args:
        user_dict: extra dictionary file in jieba's format (see the module docstring).
        extra_words: more words to keep whole, e.g. shop brands ("海飞丝", "华为mate60").
        stop_words: tokens to drop; ``None`` uses the shipped Chinese and English lists.
        lowercase: lower-case the text before segmentation.
        default_dict: also load ``resources/userdict_zh.txt`` (common brands and terms).
        max_chars: input beyond this many characters is ignored.
    """

    def __init__(
        self,
        user_dict: str | os.PathLike[str] | None = None,
        extra_words: Iterable[str] = (),
        stop_words: Iterable[str] | None = None,
        lowercase: bool = True,
        default_dict: bool = True,
        max_chars: int = 2000,
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {max_chars}.")
        if isinstance(extra_words, str) or isinstance(stop_words, str):
            raise TypeError("extra_words and stop_words take a list of words, not one string.")
        self.lowercase = lowercase
        self.max_chars = max_chars
        entries: list[tuple[str, int | None]] = []
        paths = ([DEFAULT_USER_DICT] if default_dict else []) + ([user_dict] if user_dict else [])
        for path in paths:
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"User dictionary {os.fspath(path)!r} not found; pass an existing UTF-8 file "
                    "with one word per line (optional frequency and POS tag), or user_dict=None."
                )
            entries += _read_user_dict(path)
        entries += [(word, None) for word in extra_words]
        normalized = ((_normalize(word, lowercase), freq) for word, freq in entries)
        self._entries = [(word, freq) for word, freq in normalized if word]
        if stop_words is None:
            stop_words = [w for path in DEFAULT_STOP_WORD_FILES for w in _read_lines(path)]
        self.stop_words = frozenset(_normalize(w) for w in stop_words) - {""}
        self._tokenizer: jieba.Tokenizer | None = None
        self._phrase_re: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def _ensure_ready(self) -> jieba.Tokenizer:
        """Build the private jieba tokenizer and the phrase matcher on first use."""
        if self._tokenizer is not None:
            return self._tokenizer
        with self._lock:
            if self._tokenizer is not None:
                return self._tokenizer
            freq, total = _base_dictionary()
            tokenizer = jieba.Tokenizer()
            # Copying the loaded prefix dictionary (30 ms, 15 MB) instead of re-reading it
            # (1.6 s) keeps pipelines independent; jieba has no public API for it.
            tokenizer.FREQ, tokenizer.total, tokenizer.initialized = dict(freq), total, True
            phrases = set()
            for word, freq_ in self._entries:
                if _HAN_ONLY_RE.fullmatch(word):
                    tokenizer.add_word(word, freq_)
                else:
                    phrases.add(word)
            # Multi-character Chinese stop words are cut out whole, so they are dropped whole.
            for word in sorted(self.stop_words):
                if len(word) > 1 and _HAN_ONLY_RE.fullmatch(word) and not tokenizer.FREQ.get(word):
                    tokenizer.add_word(word)
            if phrases:
                ordered = sorted(phrases, key=lambda p: (-len(p), p))  # longest wins
                self._phrase_re = re.compile("|".join(map(_phrase_pattern, ordered)), re.I)
            self._tokenizer = tokenizer
            return tokenizer

    def normalize(self, text: str) -> str:
        """Return the normalised text that segmentation sees (see the module docstring)."""
        if not isinstance(text, str):
            raise TypeError(
                f"TextPipeline expects str, got {type(text).__name__}; "
                "decode bytes first and pass '' for missing text."
            )
        return _normalize(text[: self.max_chars], self.lowercase)[: self.max_chars]

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into normalised tokens, dropping stop words and punctuation."""
        text = self.normalize(text)
        if not text:
            return []
        tokenizer = self._ensure_ready()
        raw: list[str] = []
        start = 0
        matches = list(self._phrase_re.finditer(text)) if self._phrase_re else []
        for match in matches + [None]:
            end = match.start() if match else len(text)
            raw += self._scan(text[start:end], tokenizer)
            if match:
                raw.append(match.group().replace(" ", ""))
                start = match.end()
        return [token for token in raw if self._keep(token)]

    __call__ = tokenize

    def _scan(self, text: str, tokenizer: jieba.Tokenizer) -> list[str]:
        tokens: list[str] = []
        for match in _TOKEN_RE.finditer(text):
            kind = match.lastgroup
            if kind == "model_no":
                word, number = match.group("model", "model_no")
                tokens += [word, number] if word.lower() in self.stop_words else [word + number]
            elif kind == "han":
                tokens += tokenizer.lcut(match.group(), HMM=True)
            else:
                tokens.append(match.group().replace(" ", ""))
        return tokens

    def _keep(self, token: str) -> bool:
        if token.lower() in self.stop_words or not _HAS_WORDCHAR_RE.search(token):
            return False
        return not (len(token) == 1 and token.isalpha() and not _HAN_ONLY_RE.fullmatch(token))


@functools.lru_cache(maxsize=None)
def default_pipeline() -> TextPipeline:
    """Return the process-wide pipeline with the shipped dictionaries and stop words."""
    return TextPipeline()


def tokenize(text: str) -> list[str]:
    """Tokenize ``text`` with :func:`default_pipeline`."""
    return default_pipeline().tokenize(text)
