"""Read input files (CSV, JSON, JSON lines, Parquet) with errors that name them.

Every reader here raises `InputError` (or `InputFileNotFoundError`) whose message
names the file, says what is wrong with it (the line, the column, the byte) and
what to do, instead of letting a ``UnicodeDecodeError`` or a parser's exception
escape from deep inside pandas or json.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = Path(tmp) / "people.csv"
...     _ = path.write_text("login,login\\nada,ada\\n")
...     read_csv(path, "import source")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
scimtools.errors.InputError: import source ...people.csv has the column 'login' ...
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from scimtools.errors import InputError, InputFileNotFoundError

__all__ = [
    "MAX_CELL_CHARS",
    "check_cells",
    "read_csv",
    "read_json",
    "read_jsonl",
    "read_parquet",
    "read_text",
]

MAX_CELL_CHARS = 1_000_000
"""The longest cell accepted in a source: longer ones are nearly always a quote
left open, which turns the rest of the file into one cell."""

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


_CSV_ADVICE = "Excel: 'CSV UTF-8'; iconv -f latin1 -t utf-8"
JS_ADVICE = "in the editor's encoding menu, or iconv -f latin1 -t utf-8"
"""How to save a JavaScript file as UTF-8, for `read_text`'s ``advice``."""


def read_text(path: str | Path, what: str, *, advice: str = _CSV_ADVICE) -> str:
    """Return a UTF-8 file's text without a byte-order mark.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for messages (``"lambda file"``).
    advice
        How to save the file as UTF-8, for messages; by default for CSV
        (Excel's "CSV UTF-8" or iconv).

    Raises
    ------
    InputFileNotFoundError
        The file does not exist.
    InputError
        The file is not UTF-8 (the message says where and how to fix it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{what} {path} does not exist; check the path")
    data = path.read_bytes()
    if data.startswith(_UTF16_BOMS):
        raise InputError(
            f"{what} {path} is UTF-16; save it as UTF-8 ({advice}) and try again"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{what} {path} is not UTF-8: byte 0x{data[exc.start]:02x} on line"
            f" {line} cannot be read; save the file as UTF-8 ({advice}) and try"
            " again"
        ) from None
    return text.removeprefix("\ufeff")


class _StrictJSONError(ValueError):
    """A JSON text that parses but would lose or bend a value."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _StrictJSONError(
                f"the key {key!r} appears twice in one object, so one of its values"
                " would be lost; keep one"
            )
        record[key] = value
    return record


def _constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not a JSON value; write null or a number")


def _float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _StrictJSONError(
            f"{text[:20]} is too large for a number (it would be read as infinity);"
            " write it as text or fix it"
        )
    return number


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _loads(text: str) -> Any:
    """`json.loads`, refusing what it would bend or lose: repeated keys, NaN,
    Infinity, numbers too large for a float, and lone surrogates (text that no
    UTF-8 file, DataFrame or server can hold)."""
    value = json.loads(
        text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float
    )
    if _SURROGATE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _StrictJSONError(
                "a \\uD800-\\uDFFF escape that is not half of a surrogate pair"
                " stands for no character; fix the text where it was exported"
            ) from None
    return value


def read_jsonl(path: str | Path, what: str) -> list[dict[str, Any]]:
    """Return the JSON objects of a JSON-lines file, one per non-blank line.

    Raises
    ------
    InputError
        A line is not JSON or not an object, repeats a key within one object,
        or holds NaN or Infinity; the message names the line.
    """
    records = []
    for number, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _loads(line)
        except _StrictJSONError as exc:
            raise InputError(f"line {number} of {what} {path}: {exc}") from None
        except ValueError as exc:
            hint = (
                "; the file looks like one JSON array: write one object per line"
                " (JSON Lines)"
                if number == 1 and line.lstrip().startswith("[")
                else ""
            )
            raise InputError(
                f"line {number} of {what} {path} is not JSON ({exc.args[0]}); each"
                " line must hold one JSON object: fix or remove that line" + hint
            ) from None
        if not isinstance(record, dict):
            raise InputError(
                f"line {number} of {what} {path} is a JSON {type(record).__name__},"
                " not an object; each line must hold one JSON object"
            )
        records.append(record)
    return records


def read_json(path: str | Path, what: str) -> Any:
    """Return the JSON document in a file.

    Raises
    ------
    InputError
        The file is empty or not JSON, repeats a key within one object, or
        holds NaN or Infinity.
    """
    text = read_text(path, what)
    if not text.strip():
        raise InputError(f"{what} {path} is empty; expected a JSON document")
    try:
        return _loads(text)
    except _StrictJSONError as exc:
        raise InputError(f"{what} {path}: {exc}") from None
    except ValueError as exc:
        raise InputError(
            f"{what} {path} is not JSON ({exc.args[0]}); fix the file or export"
            " it again"
        ) from None


def read_csv(path: str | Path, what: str, **options: Any) -> pd.DataFrame:
    """Return a UTF-8 CSV file as a DataFrame of text, checked for common damage.

    ``options`` go to `pandas.read_csv` (default ``dtype=str``,
    ``keep_default_na=False``).

    Raises
    ------
    InputError
        The file is not UTF-8, is empty, repeats a column name, has a row with
        too many fields or an unclosed quote, or holds a cell longer than
        `MAX_CELL_CHARS`.
    """
    text = read_text(path, what)
    if not text.strip():
        raise InputError(
            f"{what} {path} is empty; it needs a header row naming the columns"
        )
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(
                f"{what} {path} has the column {name!r} twice in its header;"
                " rename or remove one of them"
            )
        seen.add(name)
    options = {"dtype": str, "keep_default_na": False, **options}
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        reason = " ".join(str(exc).split())
        raise InputError(
            f"{what} {path} cannot be read as CSV ({reason}); check for a quote"
            " left open or a row with more fields than the header"
        ) from None
    check_cells(frame, path, what)
    return frame


def read_parquet(path: str | Path, what: str) -> pd.DataFrame:
    """Return a Parquet file as a DataFrame.

    Raises
    ------
    InputError
        The file is not Parquet or is damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{what} {path} does not exist; check the path")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, ...)
        reason = " ".join(str(exc).split())[:200]
        raise InputError(
            f"{what} {path} cannot be read as Parquet ({reason}); export it again"
            " or use CSV"
        ) from None


def check_cells(
    frame: pd.DataFrame, path: str | Path, what: str, limit: int = MAX_CELL_CHARS
) -> None:
    """Raise if a text cell is longer than ``limit`` characters.

    Examples
    --------
    >>> check_cells(pd.DataFrame({"a": ["x" * 11]}), "s.csv", "source", limit=10)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    scimtools.errors.InputError: source s.csv: row 1, column 'a' holds 11 ...
    """
    for column in frame.columns:
        values = frame[column]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        try:
            lengths = values.str.len().fillna(0)
        except AttributeError:  # no text in this column
            continue
        if len(lengths) and lengths.max() > limit:
            position = int(lengths.to_numpy().argmax())
            raise InputError(
                f"{what} {path}: row {position + 1}, column {column!r} holds"
                f" {int(lengths.max()):,} characters, more than {limit:,}; a quote"
                " left open makes the rest of the file one cell: check the quoting"
                " of that row"
            )
