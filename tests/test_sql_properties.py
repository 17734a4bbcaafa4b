"""Property tests for the SQL scanner: placeholders are found exactly where they are real."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from awaitdb._dialects import dialect_for
from awaitdb._sql import _scan, split_statements

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
sql_text = st.text(  # sqlite3 refuses SQL containing NUL at all
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@given(body=text)
def test_nothing_inside_a_string_literal_is_a_parameter(body: str) -> None:
    literal = "'" + body.replace("'", "''") + "'"
    assert _scan(f"SELECT {literal}").order == ()


@given(body=text)
def test_nothing_inside_comments_or_quoted_names_is_a_parameter(body: str) -> None:
    block = body.replace("*/", "")
    line = body.replace("\n", " ").replace("\r", " ")
    ident = '"' + body.replace('"', '""') + '"'
    sql = f"SELECT 1 /* {block} */ AS {ident} -- {line}\n"
    assert _scan(sql).order == ()


@given(first=names, second=names, body=text)
def test_real_placeholders_are_found_in_order(first: str, second: str, body: str) -> None:
    literal = "'" + body.replace("'", "''") + "'"
    info = _scan(f"SELECT :{first}, {literal}, x::text, :{second}, :{first}")
    expected = (first,) if first == second else (first, second)
    assert info.order == expected
    numbered = info.text_for(dialect_for("postgresql"))
    assert numbered.count("$1") == (3 if first == second else 2)


@given(bodies=st.lists(sql_text, min_size=1, max_size=5))
@settings(max_examples=60)
def test_splitting_keeps_statements_whole(bodies: list[str]) -> None:
    statements = [f"SELECT '{b.replace(chr(39), chr(39) * 2)}' AS v;" for b in bodies]
    script = "\n".join(statements)
    split = [sql for _line, sql in split_statements(script)]
    assert split == statements
    conn = sqlite3.connect(":memory:")
    try:  # and SQLite agrees each piece is one complete statement with the original value
        for sql, body in zip(split, bodies, strict=True):
            assert sqlite3.complete_statement(sql)
            assert conn.execute(sql).fetchone() == (body,)
    finally:
        conn.close()
