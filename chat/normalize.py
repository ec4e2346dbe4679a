"""Chat text rules: normalisation, validation and banned-word matching (pure functions).

Text is NFKC-normalised (full-width letters become ASCII, compatibility jamo are composed) and
stripped. Banned words match case-, width- and space-insensitively, so ``바 보``, ``ＢＡＤ`` and
``b a d`` all hit ``바보`` / ``bad``.
"""

from __future__ import annotations

import re
import unicodedata

DEFAULT_MAX_CHARS = 200
_SPACES = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]+")
# a subdivision flag (🏴 England, Scotland, Wales): black flag, tag letters, cancel tag. Tag
# characters anywhere else are invisible text and stay refused
_FLAG = re.compile("\U0001f3f4[\U000e0020-\U000e007e]{1,8}\U000e007f")


class TextRejected(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def check_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The normalised text, or TextRejected (empty, control characters, too long)."""
    norm = normalize(text)
    if not norm:
        raise TextRejected("empty", "the message is empty")
    if any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in "\u200d"
        for ch in _FLAG.sub("", norm)
    ):
        raise TextRejected("control_characters", "the message contains control characters")
    if len(norm) > max_chars:
        raise TextRejected("too_long", f"at most {max_chars} characters")
    return norm


def fold(text: str) -> str:
    """The matching key: NFKC, case-folded, without any spaces or zero-width characters."""
    return _SPACES.sub("", unicodedata.normalize("NFKC", text).casefold())


def banned_hit(text: str, banned: list[str]) -> str | None:
    """The first banned word (as configured) that ``text`` contains, if any."""
    key = fold(text)
    for word in banned:
        w = fold(word)
        if w and w in key:
            return word
    return None
