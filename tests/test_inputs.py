"""Input files: values that JSON would bend or lose are refused by line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scimtools.errors import InputError
from scimtools.inputs import read_json, read_jsonl


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"userName": "ada", "userName": "bob"}', "key 'userName' appears twice"),
        ('{"name": {"givenName": "A", "givenName": "B"}}', "key 'givenName'"),
        ('{"age": NaN}', "NaN is not a JSON value"),
        ('{"age": -Infinity}', "-Infinity is not a JSON value"),
        ('{"age": 1e999}', "1e999 is too large for a number"),
        ('{"userName": "a\\ud800"}', "not half of a surrogate pair"),
        ('{"name": {"x": ["\\udc00b"]}}', "not half of a surrogate pair"),
    ],
)
def test_jsonl_lines_that_would_lose_or_bend_a_value_are_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "views.jsonl"
    path.write_text('{"userName": "first"}\n\n' + line + "\n")

    with pytest.raises(
        InputError, match=f"line 3 of IdP view .*views.jsonl: .*{message}"
    ):
        read_jsonl(path, "IdP view")


def test_a_json_document_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tenant.json"
    path.write_text('{"users": [{"id": "u1", "active": true, "active": false}]}')

    with pytest.raises(InputError, match="tenant .*tenant.json: the key 'active'"):
        read_json(path, "tenant")


def test_the_same_key_in_separate_objects_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "views.jsonl"
    path.write_text(
        '{"a": {"value": 1}, "b": {"value": 2}}\n{"a": 1.5e3}\n'
        '{"emoji": "\\ud83d\\ude00", "big": 1e308}\n'
    )

    assert read_jsonl(path, "IdP view") == [
        {"a": {"value": 1}, "b": {"value": 2}},
        {"a": 1500.0},
        {"emoji": "\U0001f600", "big": 1e308},
    ]
