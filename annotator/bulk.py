"""Writing many rows fast: ``COPY`` on PostgreSQL, ``bulk_create`` on SQLite (the
no-server demo). Rows are tuples in a given column order; JSON columns carry JSON text."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection
from django.db.models import JSONField, Model


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Reserve ``count`` primary keys, so child rows can name their parent before it
    is written. PostgreSQL draws them from the sequence (safe beside concurrent
    imports). SQLite, the single-writer demo database, continues from the largest id."""
    if count == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, count],
            )
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


def one_of(column: str, values: list) -> tuple[str, list]:
    """SQL and parameters for ``column`` being one of ``values``. PostgreSQL gets one
    array parameter: an ``IN`` list of thousands of placeholders costs more to build
    and parse than the lookup itself."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def select(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def copy_rows(
    model: type[Model], columns: Sequence[str], rows: list[tuple], *, with_ids: bool = False
) -> None:
    """Insert rows given as tuples in ``columns`` order. With ``with_ids`` false the
    rows carry no id column and the database assigns one."""
    if not rows:
        return
    if not with_ids:
        columns = tuple(c for c in columns if c != "id")
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(model._meta.db_table)
        cols = ", ".join(connection.ops.quote_name(c) for c in columns)
        # The raw psycopg copy, with its errors turned into Django's (IntegrityError...).
        with (
            connection.wrap_database_errors,
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
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
