"""Write DataFrames as CSV files that csv readers and spreadsheets read safely.

Every CSV file scimtools writes goes through `write_csv`: values come from IdPs
and tenants, so a cell may hold a line break or start a formula.

- A cell holding ``\\r`` or ``\\n`` is quoted (RFC 4180 §2.6). pandas quotes a
  cell only for the characters of its line terminator, so with ``"\\n"`` a lone
  ``\\r`` went out bare and readers split the row there.
- With ``spreadsheet_safe``, a cell whose first character other than
  whitespace and control characters is ``=``, ``+``, ``-`` or ``@``, or that
  starts with a tab or a carriage return, gets a leading ``'`` so that a
  spreadsheet shows it as text instead of running it (OWASP, CSV injection).
  `restore_cell` takes the mark off again; a cell that starts with ``'`` gets
  one more, so that the round trip is exact.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["defuse_cell", "restore_cell", "write_csv"]

# Whitespace and invisible characters (C0, DEL, C1, soft hyphen, zero-width
# and bidi controls, word joiner, BOM) that a spreadsheet may skip before it
# looks for a formula; the full-width forms of = + - @ are treated as those.
_FORMULA = re.compile(
    "^(?:[\t\r]|[\\s\x00-\x1f\x7f-\x9f\xad\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff]*[=+\\-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63])"
)


def defuse_cell(value: Any) -> Any:
    """Return ``value`` with a leading ``'`` when a spreadsheet could run it.

    Examples
    --------
    >>> defuse_cell("=1+1"), defuse_cell("\\r=1+1"), defuse_cell(" @x")
    ("'=1+1", "'\\r=1+1", "' @x")
    >>> defuse_cell("a-b"), defuse_cell("'quoted"), defuse_cell(5)
    ('a-b', "''quoted", 5)
    """
    if isinstance(value, str) and (value[:1] == "'" or _FORMULA.match(value)):
        return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """Undo `defuse_cell`: drop one leading ``'``.

    Examples
    --------
    >>> restore_cell("'=1+1"), restore_cell("''quoted"), restore_cell("a")
    ('=1+1', "'quoted", 'a')
    """
    if isinstance(value, str) and value[:1] == "'":
        return value[1:]
    return value


def write_csv(
    frame: pd.DataFrame, path: str | Path, *, spreadsheet_safe: bool = False
) -> Path:
    """Write ``frame`` to ``path`` (UTF-8, header, no index, CRLF line ends).

    Cells with a line break are quoted; ``spreadsheet_safe`` defuses formulas
    (`defuse_cell`). Returns the path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if spreadsheet_safe:
        frame = frame.apply(_defuse_column)
    frame.to_csv(
        target,
        index=False,
        encoding="utf-8",
        lineterminator="\r\n",
        quoting=csv.QUOTE_MINIMAL,
    )
    return target


def _defuse_column(column: pd.Series) -> pd.Series:
    text = column.astype("object")
    return text.map(defuse_cell).where(text.notna(), column)
