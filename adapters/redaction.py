"""Hiding secrets in text: secret values (multi-line ones included) and credentials in URLs.

Every place that shows a step's output, an error message, a result or an artifact masks it with
:func:`mask_secrets` (or one :class:`SecretMasker` per step run); every place that logs, prints or
stores a URL shows :func:`redact_url` of it. Nothing else in the platform hides secrets its own way.

What is masked, for each secret value:

* the whole value, wherever it occurs;
* for a value of several lines (a PEM key, a JSON key file), also every line of it that has at
  least :data:`MIN_LINE_CHARS` characters once surrounding blanks are stripped, wherever it
  occurs, so a key printed line by line, with other line endings, or cut into lines by a
  reader is masked too;
* at the start of text known to be the tail of a longer output (``head_cut=True``), a leading
  fragment of at least :data:`MIN_LINE_CHARS` characters that ends a value or one of its lines.

Overlapping occurrences of different values are masked as one span, so no character of any value
is left in clear.

Examples:
    >>> mask_secrets("key=abc\\n-- line2 --", ["abc", "line1\\nline2"])
    'key=***\\n-- *** --'
    >>> redact_url("redis://:hunter2@cache:6379/0?password=hunter2")
    'redis://:***@cache:6379/0?password=***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "MIN_LINE_CHARS",
    "SecretMasker",
    "mask_secrets",
    "redact_url",
    "redact_urls",
    "url_secrets",
]

#: What a secret value is replaced with wherever output is shown.
MASK = "***"
#: Lines of a multi-line secret shorter than this (blanks stripped) are not masked on their own:
#: a lone ``}`` or ``==`` would mask every brace in the output and protects nothing.
MIN_LINE_CHARS = 4

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: Needles at least this long are found through a sampled-gram filter first; shorter ones directly.
_LONG = 24
#: Length of the grams of that filter.
_GRAM = 8
#: Query or fragment parameters whose value is taken for a credential.
_SENSITIVE_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig", re.IGNORECASE)
#: A URL inside free text: a scheme, ``://``, and everything up to a blank or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


class SecretMasker:
    """The secret values of one step, ready to mask text (build once, use for every line).

    Args:
        secrets: the secret values; empty ones are ignored.

    Examples:
        >>> masker = SecretMasker(["-----BEGIN-----\\nQUJDREVGR0g=\\n-----END-----"])
        >>> masker.mask("got QUJDREVGR0g= from the key")
        'got *** from the key'
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        fragments: set[str] = set()
        for value in secrets:
            if not value:
                continue
            needles.add(value)
            fragments.add(value)
            lines = [line.strip() for line in _LINE_BREAK.split(value)]
            if len(lines) > 1:
                needles.update(line for line in lines if len(line) >= MIN_LINE_CHARS)
                fragments.update(lines)
        self._needles = sorted(needles, key=len, reverse=True)
        self._fragments = sorted(fragments, key=len, reverse=True)
        #: Length of the longest string masked on its own (0 when there are no secrets).
        self.longest = len(self._needles[0]) if self._needles else 0
        # Long needles (the lines of a key) are looked for only when a sampled gram of the text
        # belongs to one of them: one set lookup every few characters instead of one search per
        # needle per line (see ``_long_spans``).
        self._short = [n for n in self._needles if len(n) < _LONG]
        self._long = [n for n in self._needles if len(n) >= _LONG]
        self._grams = {n[i : i + _GRAM] for n in self._long for i in range(len(n) - _GRAM + 1)}
        self._step = (len(self._long[-1]) - _GRAM + 1) if self._long else 0

    def __bool__(self) -> bool:
        return bool(self._needles)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets occur in ``text``: sorted, merged ``(start, end)`` pairs."""
        found: list[tuple[int, int]] = []
        needles = self._needles if self._long_may_occur(text) else self._short
        for needle in needles:
            start = text.find(needle)
            while start != -1:
                found.append((start, start + len(needle)))
                start = text.find(needle, start + 1)
        if not found:
            return found
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _long_may_occur(self, text: str) -> bool:
        """False only when no long needle occurs in ``text``.

        An occurrence of a needle of length ``m >= _LONG`` covers ``m - _GRAM + 1 >= step``
        consecutive start positions of ``_GRAM``-grams inside it, so one of the positions sampled
        every ``step`` characters starts a gram of that needle.
        """
        if not self._long:
            return False
        starts = range(0, len(text) - _GRAM + 1, self._step)
        return not self._grams.isdisjoint(text[i : i + _GRAM] for i in starts)

    def mask(self, text: str, *, head_cut: bool = False) -> str:
        """``text`` with every secret occurrence replaced by :data:`MASK`.

        Args:
            text: what to mask.
            head_cut: ``text`` is the tail of a longer output, so it may start inside a secret;
                a leading fragment that ends a secret (or one of its lines) is masked too.
        """
        if not self._needles:
            return text
        spans = self.spans(text)
        if not spans and not head_cut:
            return text
        pieces: list[str] = []
        done = 0
        if head_cut:
            done = self._leading_fragment(text)
            if done:
                pieces.append(MASK)
        for start, end in spans:
            if end <= done:
                continue
            start = max(start, done)
            pieces += [text[done:start], MASK]
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def safe_cut(self, text: str, at: int) -> int | None:
        """The first position at or after ``at`` where cutting ``text`` splits no secret.

        None when the answer depends on text not seen yet (a secret may run past the end).
        """
        cut = at
        for start, end in self.spans(text):
            if start < cut < end:
                cut = end
        if self._needles and cut + self.longest - 1 > len(text):
            return None
        return cut

    def _leading_fragment(self, text: str) -> int:
        """Length of the longest start of ``text`` that is the end of a secret or of one of its
        lines, at least :data:`MIN_LINE_CHARS` long (0 when there is none)."""
        best = 0
        for fragment in self._fragments:
            for size in range(min(len(fragment), len(text)), max(best, MIN_LINE_CHARS - 1), -1):
                if text.startswith(fragment[-size:]):
                    best = size
                    break
        return best


def mask_secrets(text: str, secrets: Iterable[str], *, head_cut: bool = False) -> str:
    """Replace every occurrence of each secret value in ``text`` with :data:`MASK`.

    Multi-line values are masked whole and line by line (see the module docstring).

    Args:
        text: what to mask.
        secrets: the secret values.
        head_cut: ``text`` is the tail of a longer output and may start inside a secret.

    Examples:
        >>> mask_secrets("token=hunter2", ["hunter2"])
        'token=***'
    """
    return SecretMasker(secrets).mask(text, head_cut=head_cut)


def url_secrets(url: str) -> list[str]:
    """The credentials inside ``url``: its password and sensitive parameter values, as written
    and percent-decoded (to mask them in free text such as an error message)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    _, sep, password = userinfo.partition(":")
    if sep and password:  # a user name alone is not taken for a credential
        found.append(password)
    for params in (parts.query, parts.fragment):
        for pair in params.split("&"):
            name, eq, value = pair.partition("=")
            if eq and value and _SENSITIVE_PARAM.search(unquote(name)):
                found.append(value)
    return sorted({v for raw in found for v in (raw, unquote(raw)) if v}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with its password and sensitive parameters (``password=``, ``token=``...) shown
    as :data:`MASK`; the scheme, user name, host, port, path and other parameters stay.

    Examples:
        >>> redact_url("https://me:pw@prefect.example/api")
        'https://me:***@prefect.example/api'
        >>> redact_url("redis://127.0.0.1:6379/0?password=pw&db=1")
        'redis://127.0.0.1:6379/0?password=***&db=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_secrets(url, _loose_secrets(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep and password:
            netloc = f"{user}:{MASK}@{host}"
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def redact_urls(text: str, *known: str) -> str:
    """``text`` with every URL in it redacted, and the credentials of the ``known`` URLs masked
    wherever else they appear (an error message may quote a URL's pieces).

    Examples:
        >>> redact_urls("cannot reach redis://:pw@h:6379/0", "redis://:pw@h:6379/0")
        'cannot reach redis://:***@h:6379/0'
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    values = [v for url in known for v in url_secrets(url)]
    return mask_secrets(text, values) if values else text


def _redact_params(params: str) -> str:
    if not params:
        return params
    out = []
    for pair in params.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and _SENSITIVE_PARAM.search(unquote(name)):
            pair = f"{name}={MASK}"
        out.append(pair)
    return "&".join(out)


def _loose_secrets(url: str) -> list[str]:
    """Credentials of a URL ``urlsplit`` rejects: what sits between ``:`` and ``@`` after the
    scheme, and sensitive parameter values."""
    found = re.findall(r"://[^/@:]*:([^/@]+)@", url)
    found += [m.group(2) for m in re.finditer(r"[?&#]([^=&#]+)=([^&#]*)", url)
              if _SENSITIVE_PARAM.search(m.group(1)) and m.group(2)]  # fmt: skip
    return found
