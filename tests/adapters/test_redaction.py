"""SecretMasker: whole values, lines of multi-line values, overlaps, cut heads, safe cuts."""

from __future__ import annotations

import pytest

from adapters.redaction import MASK, SecretMasker, mask_secrets

KEY = "-----BEGIN KEY-----\nQUJDREVGR0hJSktM\nTU5PUFFS\n==\n-----END KEY-----"


@pytest.mark.parametrize(
    ("text", "secrets", "shown"),
    [
        ("token=hunter2!", ["hunter2"], "token=***!"),
        ("xabcdef", ["abcdef", "xab"], "***"),  # overlapping values: no character left
        ("aaaa", ["aa"], "***"),
        (f"k:\n{KEY}\n", [KEY], "k:\n***\n"),
        ("got QUJDREVGR0hJSktM ok", [KEY], "got *** ok"),
        ("  TU5PUFFS  \r\n", [KEY], "  ***  \r\n"),
        (KEY.replace("\n", "\r\n"), [KEY], "***\r\n***\r\n***\r\n==\r\n***"),
        ("nothing here", [KEY, ""], "nothing here"),
    ],
)
def test_mask(text: str, secrets: list[str], shown: str) -> None:
    assert mask_secrets(text, secrets) == shown


def test_short_lines_of_a_multi_line_value_are_not_masked_on_their_own() -> None:
    assert mask_secrets("a == b; }", ["line one\n==\n}"]) == "a == b; }"


def test_a_cut_head_that_ends_a_secret_is_masked() -> None:
    masker = SecretMasker(["MYPRIVATEKEY123", KEY])
    assert masker.mask("IVATEKEY123 rest", head_cut=True) == f"{MASK} rest"
    assert masker.mask("R0hJSktM\nTU5PUFFS", head_cut=True) == f"{MASK}\n{MASK}"
    assert masker.mask("IVATEKEY123 rest") == "IVATEKEY123 rest"
    assert masker.mask("123 rest", head_cut=True) == "123 rest"  # under 4 characters: kept


def test_safe_cut_moves_past_a_secret_and_waits_when_it_may_run_on() -> None:
    masker = SecretMasker(["SECRET"])
    assert masker.safe_cut("aaSECRETbbbbbb", 4) == 8
    assert masker.safe_cut("aaaaaaaaaaaaaa", 4) == 4
    assert masker.safe_cut("aaaSEC", 4) is None  # "SEC" may continue as "SECRET"
    assert SecretMasker([]).safe_cut("ab", 1) == 1


def test_spans_match_a_search_for_every_needle() -> None:
    """The sampled-gram filter for long needles never misses one (random texts and secrets)."""
    import random

    rng = random.Random(4)
    alphabet = "abAB01-=\n "
    for _ in range(400):
        secrets = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90)))
            for _ in range(rng.randint(1, 3))
        ]
        masker = SecretMasker(secrets)
        text = "".join(
            rng.choice([rng.choice(alphabet), rng.choice(secrets)[: rng.randint(1, 90)]])
            for _ in range(rng.randint(1, 40))
        )
        needles = {s for s in secrets if s} | {
            line.strip()
            for s in secrets
            if len(s.splitlines()) > 1 or "\r" in s or "\n" in s
            for line in s.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if len(line.strip()) >= 4
        }
        covered = [False] * len(text)
        for needle in needles:
            start = text.find(needle)
            while start != -1:
                covered[start : start + len(needle)] = [True] * len(needle)
                start = text.find(needle, start + 1)
        from_spans = [False] * len(text)
        for start, end in masker.spans(text):
            from_spans[start:end] = [True] * (end - start)
        assert from_spans == covered, (secrets, text)
