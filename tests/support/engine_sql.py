"""The warehouse's SQL as Trino, Snowflake and BigQuery would receive it, and what their engines would refuse.

We cannot run those servers here, so :class:`CapturingEngine` drives the real warehouse functions
with a target dialect: each function builds its statements for that dialect (``engine.dialect.name``
picks the dialect's SQL, as in production), every statement is recorded, and a real DuckDB file
answers it so that the functions run to their end (the second statement of a profile or of the PCA
moments depends on the first's answer). The DuckDB answer only keeps the function going; what is
checked is the recorded statement, compiled with the target's SQLAlchemy dialect.

:func:`rendered` writes the bound values into the SQL the way each driver sends them (Trino's
client inlines them into ``EXECUTE ... USING`` with its own formatter; BigQuery's and Snowflake's
literals come from their SQLAlchemy dialects), and :func:`problems` checks that text: the target's
grammar in sqlglot's strict mode, then facts sqlglot's parser does not know (which functions the
engine has, that every column reference is a mapped column or an alias, BigQuery's missing ``%``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlglot
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlglot import exp
from sqlglot.tokens import TokenType

URLS = {"trino": "trino://", "snowflake": "snowflake://", "bigquery": "bigquery://"}

# Functions our SQL may call on each engine, as sqlglot names them (its expression class, or the
# lower-case name of a function it does not know). Each is documented by the engine: Trino
# (trino.io/docs/current/functions), Snowflake (docs.snowflake.com/en/sql-reference/functions-all),
# BigQuery (cloud.google.com/bigquery/docs/reference/standard-sql/functions-and-operators).
# A new function in the warehouse code fails the check until it is confirmed here.
_COMMON = {"Count", "Sum", "Min", "Max", "Avg", "Abs", "Sqrt", "Round", "RowNumber", "Cast", "Case", "If",
           "Coalesce"}
FUNCTIONS: dict[str, set[str]] = {
    "trino": _COMMON | {"infinity", "WidthBucket", "ApproxQuantile", "Ln", "Greatest", "Least", "Floor", "DateTrunc"},
    "snowflake": _COMMON | {"WidthBucket", "PercentileCont", "Ln", "Greatest", "Least", "Floor", "DateTrunc"},
    "bigquery": _COMMON | {"ApproxQuantiles", "Ln", "Greatest", "Least", "Floor", "TimestampTrunc", "Mod"},
}
# Aggregates an engine has only as analytic (window) functions.
ANALYTIC_ONLY: dict[str, set[str]] = {"bigquery": {"PercentileCont", "PercentileDisc"}}


class CapturingEngine:
    """An engine of ``dialect`` (trino, snowflake, bigquery) whose statements are recorded and
    answered by the real DuckDB engine ``answer``. Only what the warehouse package uses of an
    Engine is here: ``dialect``, ``url`` and ``connect()``."""

    def __init__(self, dialect: str, answer: Engine) -> None:
        self.dialect: Dialect = sa.create_mock_engine(URLS[dialect], None).dialect
        self.url = answer.url
        self.answer = answer
        self.statements: list[Any] = []

    def connect(self) -> _CapturingConnection:
        return _CapturingConnection(self, self.answer.connect())

    @property
    def engine(self) -> Engine:
        """This, typed as the Engine the warehouse functions take."""
        return self  # type: ignore[return-value]


class _CapturingConnection:
    def __init__(self, engine: CapturingEngine, real: Connection) -> None:
        self.engine, self._real = engine, real

    def __enter__(self) -> _CapturingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        self.engine.statements.append(statement)
        return self._real.execute(statement, *args, **kwargs)

    def rollback(self) -> None:
        self._real.rollback()


def _trino_literal(value: Any) -> str:
    """A bound value as Trino's DB-API client writes it into ``EXECUTE ... USING`` (its own code)."""
    from trino.dbapi import Cursor

    cursor = Cursor.__new__(Cursor)  # the formatter only recurses into itself; no connection needed
    return str(cursor._format_prepared_param(value))


def rendered(statement: Any, dialect: Dialect) -> str:
    """``statement`` compiled for ``dialect`` with every bound value written in as its driver sends it."""
    if dialect.name == "trino":
        base = dialect.statement_compiler

        class DriverLiterals(base):  # type: ignore[misc, valid-type]
            def render_literal_value(self, value: Any, type_: Any) -> str:
                return _trino_literal(value)

        compiled = DriverLiterals(dialect, statement, compile_kwargs={"literal_binds": True})
        return str(compiled)
    text = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.paramstyle in ("pyformat", "format"):
        # The compiler doubled each literal % for the driver, whose client-side interpolation
        # (Snowflake's connector) turns %% back into the % the server reads.
        text = text.replace("%%", "%")
    return text


@dataclass
class Checked:
    """The parsed statement and everything the target engine would refuse in it."""

    sql: str
    tree: exp.Expression | None
    problems: list[str] = field(default_factory=list)


def _functions(tree: exp.Expression) -> list[exp.Func]:
    """The function calls of the statement (sqlglot also counts AND/OR and operators as functions)."""
    return [node for node in tree.find_all(exp.Func)
            if not isinstance(node, exp.Connector | exp.Binary | exp.Unary)]


def _name(node: exp.Expression) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else type(node).__name__


def problems(sql: str, engine: str, known_columns: set[str]) -> Checked:
    """What ``engine`` would refuse in ``sql``: grammar errors, functions it lacks, unknown column names.

    ``known_columns`` are the physical columns the statement may read; any other column reference
    must be an alias the statement defines (a bare ``inf`` is neither: it would be read as a column).
    """
    try:
        tree = sqlglot.parse_one(sql, read=engine, error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        return Checked(sql, None, [f"{engine} grammar: {str(exc).splitlines()[0]}"])
    found: list[str] = []
    for node in _functions(tree):
        name = _name(node)
        if name in ANALYTIC_ONLY.get(engine, set()):
            if not isinstance(node.parent, exp.Window):
                found.append(f"{engine} has {name} only as an analytic function (OVER ...)")
        elif name not in FUNCTIONS[engine]:
            found.append(f"{engine} has no function {name}")
    aliases = {a.alias for a in tree.find_all(exp.Alias)} | {t.alias for t in tree.find_all(exp.Subquery) if t.alias}
    for column in tree.find_all(exp.Column):
        if column.name not in known_columns and column.name not in aliases:
            found.append(f"column {column.name!r} is neither mapped nor an alias of the statement")
    found += _token_problems(sql, engine)
    return Checked(sql, tree, sorted(set(found)))


# Type names BigQuery does not know (sqlglot reads them as FLOAT64, STRING, ... and says nothing).
_NOT_BIGQUERY_TYPES = {"DOUBLE", "VARCHAR", "INTEGER", "INT", "BIGINT", "DECIMAL", "REAL", "TEXT", "FLOAT"}


def _token_problems(sql: str, engine: str) -> list[str]:
    """What sqlglot's lenient grammars accept but the engine does not: ``::`` casts (Trino, BigQuery),
    DuckDB's ``[...]`` list literals, BigQuery's missing ``%`` and foreign type names."""
    found = []
    tokens = sqlglot.tokenize(sql, read=engine)
    for before, token, after in zip([None, *tokens[:-1]], tokens, [*tokens[1:], None], strict=True):
        kind = token.token_type
        if kind == TokenType.DCOLON and engine in ("trino", "bigquery"):
            found.append(f"{engine} has no :: cast")
        if kind == TokenType.L_BRACKET and (before is None or before.token_type not in (
                TokenType.ARRAY, TokenType.VAR, TokenType.IDENTIFIER, TokenType.R_PAREN, TokenType.R_BRACKET)):
            found.append("a [...] list literal (DuckDB) where the engine needs ARRAY[...]")
        if engine == "bigquery" and kind == TokenType.MOD and token.text == "%":
            found.append("bigquery has no % operator (MOD(x, y))")
        if (engine == "bigquery" and kind == TokenType.ALIAS and after is not None
                and after.text.upper() in _NOT_BIGQUERY_TYPES and after.token_type != TokenType.IDENTIFIER):
            found.append(f"bigquery has no type {after.text.upper()}")
    return found


def quoted_identifiers(tree: exp.Expression) -> dict[str, bool]:
    """Each identifier of the parsed statement and whether it was quoted."""
    return {i.name: bool(i.args.get("quoted")) for i in tree.find_all(exp.Identifier)}

