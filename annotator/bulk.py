"""Writing many rows fast: ``COPY`` on PostgreSQL, ``bulk_create`` on SQLite (the
no-server demo). Rows are tuples in a given column order; JSON columns carry JSON text.
And Python's cycle collector slowed for work over many rows (imports, exports)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from django.db import connection
from django.db.models import JSONField, Model
from psycopg import postgres, pq
from psycopg.adapt import Dumper

from annotator import database

# Python's cycle collector starts a young collection once per this many new objects
# inside ``collector_slowed``, instead of once per 700.
BULK_GC_THRESHOLD = 100_000


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Reserve ``count`` primary keys, so child rows can name their parent before it
    is written. PostgreSQL draws them from the sequence (safe beside concurrent
    imports). SQLite, the single-writer demo database, continues from the largest id."""
    if count == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if database.has_arrays():
            # The sequence is looked up once: per row, the lookup costs 5x the nextval.
            cursor.execute(
                "SELECT array_agg(nextval(q.seq)) FROM generate_series(1, %s),"
                " (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq OFFSET 0) q",
                [count, table],
            )
            return cursor.fetchone()[0]
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


def rows_by_key(
    model: type[Model],
    fixed: dict[str, Any],
    key: str,
    values: list,
    columns: Sequence[str],
    *,
    key_share: bool = False,
) -> list[tuple]:
    """``(key, *columns)`` of the rows of ``model`` whose ``fixed`` columns hold the
    given values and whose ``key`` (a text column) is one of ``values``; ``fixed`` and ``key`` should
    make a unique index, so each value is one index probe. ``key_share``: the rows found
    are locked ``FOR KEY SHARE`` to the commit, as a foreign-key check locks the row it
    finds (no other transaction can delete them meanwhile).

    On PostgreSQL that is forced with a lateral subquery per value: ``key = ANY(...)``
    lets the planner scan every row matching ``fixed`` instead, which it does when the
    table grew in this same transaction (its statistics still say it is small), so
    every chunk of an import would cost more than the last."""
    table = connection.ops.quote_name(model._meta.db_table)
    names = [connection.ops.quote_name(c) for c in columns]
    where = " AND ".join(f"t.{connection.ops.quote_name(c)} = %s" for c in fixed)
    quoted_key = connection.ops.quote_name(key)
    if database.has_arrays():
        inner = ", ".join(["1", *(f"t.{n}" for n in names)])
        sql = (
            f"SELECT {', '.join(['k.value', *(f'r.{n}' for n in names)])}"
            f" FROM unnest(%s::text[]) AS k(value) CROSS JOIN LATERAL (SELECT {inner} FROM {table} t"
            f" WHERE {where} AND t.{quoted_key} = k.value LIMIT 1"
            f"{' FOR KEY SHARE' if key_share else ''}) r"
        )
        connection.ensure_connection()
        # Bound by the server: Django binds on the client, spelling out the array in Python.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, [list(values), *fixed.values()])
            return cursor.fetchall()
    sql = (
        f"SELECT {', '.join([f't.{quoted_key}', *(f't.{n}' for n in names)])} FROM {table} t"
        f" WHERE {where} AND t.{quoted_key} IN ({', '.join(['%s'] * len(values))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*fixed.values(), *values])
        return cursor.fetchall()


def copy_rows(
    model: type[Model],
    columns: Sequence[str],
    rows: list[tuple],
    *,
    with_ids: bool = False,
    finish_later: ExitStack | None = None,
) -> None:
    """Insert rows given as tuples in ``columns`` order. With ``with_ids`` false the
    rows carry no id column and the database assigns one.

    With ``finish_later``, a COPY returns once its rows are sent and is finished (its rows confirmed, or refused) when that stack closes: the caller
    can prepare its next rows while the database takes these in. No other query can run
    on the connection until then."""
    if not rows:
        return
    if not with_ids:
        columns = tuple(c for c in columns if c != "id")
    if database.has_copy():
        table = connection.ops.quote_name(model._meta.db_table)
        cols = ", ".join(connection.ops.quote_name(c) for c in columns)
        with ExitStack() as stack:
            # The raw psycopg copy, with its errors turned into Django's (IntegrityError...).
            stack.enter_context(connection.wrap_database_errors)
            cursor = stack.enter_context(connection.cursor()).cursor
            types = _binary_types(model, columns)
            if "jsonb" in (types or ()):
                cursor.adapters.register_dumper(None, _JsonTextDumper)
            copy = stack.enter_context(
                cursor.copy(
                    f"COPY {table} ({cols}) FROM STDIN" + (" (FORMAT BINARY)" if types else "")
                )
            )
            if types:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
            if finish_later is not None:
                finish_later.push(stack.pop_all())
        return
    json_columns = {
        f.column for f in model._meta.concrete_fields if isinstance(f, JSONField)
    } & set(columns)
    objs = []
    for row in rows:
        values = dict(zip(columns, row, strict=True))
        for key in json_columns:
            if values[key] is not None:
                values[key] = json.loads(values[key])
        objs.append(model(**values))
    model.objects.bulk_create(objs, batch_size=500)


class _JsonTextDumper(Dumper):
    """A ``jsonb`` value in COPY's binary format from the JSON text a row carries: the
    format's version byte, then the text (which the server parses, as it would in the
    text format)."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


# PostgreSQL column types that psycopg writes in COPY's binary format straight from
# Python values: less work than the text format on both ends (a fifth off a
# million-step import). JSON columns, given as JSON text, go as ``jsonb`` with
# ``_JsonTextDumper``: the rows with one (traces, labels) took three times as long
# to send in the text format as those without.
_BINARY_TYPES = {
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "text": "text",
    "varchar": "varchar",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "real": "float4",
    "double precision": "float8",
    "jsonb": "jsonb",
}


def _binary_types(model: type[Model], columns: Sequence[str]) -> list[str] | None:
    """The binary COPY types of ``columns``, or None when one has no binary form here."""
    fields = {f.column: f for f in model._meta.concrete_fields}
    types = []
    for column in columns:
        db_type = (fields[column].db_type(connection) or "").split("(")[0]
        if db_type not in _BINARY_TYPES:
            return None
        types.append(_BINARY_TYPES[db_type])
    return types


@contextmanager
def collector_slowed() -> Iterator[None]:
    """Python's cycle collector runs a young collection once per ``BULK_GC_THRESHOLD``
    new objects inside, not once per 700. An import or export makes a tuple per step
    and several objects per trace, all freed by reference counting, yet every 700 set
    off a collection, and a chunk's rows surviving them set off full collections over
    the whole process: 1.0-1.3 s of the 5 s a 100k-trace import spent in Python, and
    1.4-2.4 s of a ProcessBench export's 5 s (bench/import_export.py). Cycles are still
    collected, so memory stays flat (the collector off altogether left 33,000 objects in
    cycles per 100k traces imported). Raised already (another import in this process,
    on another thread) or off: left as it is."""
    first, *older = gc.get_threshold()
    if first == 0 or first >= BULK_GC_THRESHOLD:
        yield
        return
    gc.set_threshold(BULK_GC_THRESHOLD, *older)
    try:
        yield
    finally:
        gc.set_threshold(first, *older)
