"""The --schema file format (a tiny YAML subset) and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.steps._io import DataError
from flows.steps.schema import SchemaError, load_schema, parse_schema, read_schema, resolve_schema


def test_parse_schema_lines_comments_and_quotes() -> None:
    text = (
        "---\n"
        "# a comment line\n"
        "id: integer\n"
        "\n"
        "amount:   Float   # trailing comment\n"
        '"signup: date": date\n'
        "'it''s': string\n"
        "ratio#2: float\n"
    )
    entries = parse_schema(text, "s.yaml")
    assert [(e.line, e.column, e.type) for e in entries] == [
        (3, "id", "integer"),
        (5, "amount", "float"),
        (6, "signup: date", "date"),
        (7, "it's", "string"),
        (8, "ratio#2", "float"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: integer\namount: money\n", "s.yaml:2: unknown type 'money' for column 'amount'"),
        ("id: integer\namount\n", "s.yaml:2: expected 'column: type'"),
        (": integer\n", "s.yaml:1: expected 'column: type'"),
        ("id: integer\nid: float\n", "s.yaml:2: column 'id' is already typed on line 1"),
        ('"id: integer\n', "s.yaml:1: expected 'column: type'"),
    ],
)
def test_parse_schema_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DataError, match="^" + message.replace("(", r"\(")) as info:
        parse_schema(text, "s.yaml")
    assert "\n" not in str(info.value)


def test_unknown_type_lists_the_allowed_types() -> None:
    with pytest.raises(DataError) as info:
        parse_schema("a: int\n", "s.yaml")
    assert "allowed types: boolean, integer, float, date, timestamp, string" in str(info.value)


def test_unknown_column_lists_the_input_columns() -> None:
    entries = parse_schema("a: integer\nzz: date\n", "s.yaml")
    with pytest.raises(
        DataError, match=r"s.yaml:2: unknown column 'zz'; the input's columns are: a, b"
    ):
        resolve_schema(entries, ["a", "b"], "s.yaml")


def test_load_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("b: date\n", encoding="utf-8")
    assert {k: e.type for k, e in load_schema(path, ["a", "b"]).items()} == {"b": "date"}
    with pytest.raises(DataError, match="does not exist"):
        load_schema(tmp_path / "missing.yaml", ["a"])


# -- the subset is YAML: whatever parse_schema accepts, PyYAML reads as the same mapping ----------

YAML_CASES = [
    "---\nid: integer\n",
    "---   # orders\nid: integer\n...\n# end\n",
    "\"a:b\": string\n'c#d': float\n",
    "a:b: string\n",
    "ratio#2: float   # comment\n",
    "signup date  : date\n",
    '"tab\\there": string\n"\\u00e9t\\u00e9": date\n',
    "'it''s': 'Integer'\n",
    "\"1\": integer\n'true': boolean\n",
    "  id: integer\n  amount: float\n",
    "\ufeffid: integer\n",
    "id: integer\r\namount: float\r\n",
    "-x: string\n--output=/tmp/evil: string\n",
    "a,b: string\n",
    "",
    "# only a comment\n",
    "amount: float thousands=, currency=$\nprice: Float thousands=. decimal=,  # 1.200,50\n",
    "d: date format=%m/%d/%Y\nts: timestamp format=%d.%m.%Y %H:%M:%S\n",
    "'a: b': 'integer thousands=space'\nc: float currency=€ thousands='\n",
]


@pytest.mark.parametrize("text", YAML_CASES)
def test_accepted_files_read_the_same_under_pyyaml(text: str) -> None:
    import yaml

    entries = parse_schema(text, "s.yaml")
    loaded = yaml.safe_load(text) or {}
    assert {k: str(v) for k, v in loaded.items()} == {e.column: e.written for e in entries}
    for entry in entries:  # and the line written back reads as the same entry
        (again,) = parse_schema(str(entry), "again.yaml")
        assert (again.column, again.type, again.format) == (entry.column, entry.type, entry.format)


REFUSED = [
    ("- id: integer\n", "list item"),
    ("{id: integer}\n", "flow style"),
    ("id: [integer]\n", "not a plain word"),
    ("id:\n  type: integer\n", "has no type"),
    ("id: &a integer\n", "not a plain word"),
    ("&a id: integer\n", "anchor"),
    ("!!str id: integer\n", "anchor, alias or tag"),
    ("id: |\n  integer\n", "not a plain word"),
    ("%YAML 1.1\n---\nid: integer\n", "directive"),
    ("id: integer\n---\nx: date\n", "second YAML document"),
    ("1: integer\n", "quote it"),
    ("yes: boolean\n", "as a boolean"),
    ("~: string\n", "as null"),
    ("2024-01-31: date\n", "as a date"),
    ("1.5: float\n", "as a number"),
    ("id: integer\n  amount: float\n", "indented differently"),
    ("\tid: integer\n", "tab"),
    ("a: b: string\n", "second ': '"),
    ("id:integer\n", "expected 'column: type'"),
    ('"a\\q": string\n', "not a YAML escape"),
    ("id: integer\x01\n", "U+0001"),
    ("id: integer\n...\nx: date\n", "after the '...'"),
    ("amount: float thousands=x\n", "column 'amount': thousands=x is not a separator"),
    ("d: date format=%m/%d/%y\n", "is not a pattern part"),
    ("n: integer dollars\n", "'dollars' is not an option"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_yaml_outside_the_subset_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema(text, "s.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"s.yaml:{info.value.line}: ")


def test_random_names_are_read_as_pyyaml_reads_them() -> None:
    import random

    import yaml

    rng = random.Random(11)
    alphabet = "ab :#'\"-?,[]{}&*!|>%@`\\\t.0123456789éx_=<~"
    accepted = 0
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        style = rng.choice(["plain", "single", "double"])
        if style == "single":
            key = "'" + name.replace("'", "''") + "'"
        elif style == "double":
            key = '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'
        else:
            key = name
        text = f"{key}: string\nother: integer\n"
        try:
            entries = parse_schema(text, "s.yaml")
        except SchemaError:
            continue
        loaded = yaml.safe_load(text)
        assert isinstance(loaded, dict), text
        assert {str(k): v for k, v in loaded.items()} == {e.column: e.type for e in entries}, text
        assert all(isinstance(k, str) for k in loaded), text
        accepted += 1
    assert accepted > 1000


def test_non_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"id: integer\n\xe9t\xe9: string\n")
    with pytest.raises(SchemaError) as info:
        read_schema(path)
    assert info.value.line == 2 and "byte 0xe9" in str(info.value) and "UTF-8" in str(info.value)


def _read_within(path: Path, seconds: float = 20.0) -> str:
    """What read_schema(path) raised (``DataError: ...``), or ``ok``, from a child process with
    1 GiB of address space and a time limit: an unbounded read must fail this test, not
    exhaust the machine's memory, and a blocking open must not hang the suite."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    code = (
        "import sys\nfrom flows.steps.schema import read_schema\nfrom flows.steps._io import"
        " DataError\ntry:\n    read_schema(sys.argv[1])\n    print('ok')\nexcept DataError as e:\n"
        "    print(f'DataError: {e}')\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True,
            timeout=seconds, check=False, preexec_fn=limit,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"read_schema({path}) did not return within {seconds} s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_schema_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO blocked forever; /dev/zero was read until memory ran out (14.8 GB in 15 s)."""
    if kind == "fifo":
        path = tmp_path / "s.yaml"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero") if kind == "device" else tmp_path
    error = _read_within(path)
    assert error.startswith("DataError: ") and "not a regular file" in error, error


def test_a_schema_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    from flows.steps.schema import MAX_SCHEMA_BYTES

    path = tmp_path / "s.yaml"
    lines = [b"c%06d: integer   # %s\n" % (i, b"x" * 100) for i in range(20_000)]
    text = b"".join(lines)[:MAX_SCHEMA_BYTES]
    text = text[: text.rindex(b"\n") + 1]
    path.write_bytes(text + b"# " + b"y" * (MAX_SCHEMA_BYTES - len(text)) + b"\n")
    error = _read_within(path)
    assert error.startswith("DataError: ") and "larger than 2 MiB" in error, error
    path.write_bytes(text)  # under the limit: read
    assert read_schema(path)[-1].column == f"c{text.count(b'integer') - 1:06d}"
