"""What the database under us can do: PostgreSQL in every deployment, SQLite for the
no-server demo (``manage.py setup_demo`` without ``DATABASE_URL``).

Code that needs a PostgreSQL-only feature asks here, once per feature, instead of
testing ``connection.vendor`` itself: a PostgreSQL-only query on a path the demo offers
breaks the demo, and a question with a name says which feature the other path replaces.
Django's own feature flags answer where they exist (row locks); the rest are
PostgreSQL's extensions, which SQLite lacks.
"""

from __future__ import annotations

from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper


def _postgresql(connection: BaseDatabaseWrapper | None) -> bool:
    return (connection or default_connection).vendor == "postgresql"


def has_row_locks(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``SELECT ... FOR UPDATE`` (SQLite serialises writers and has no row locks)."""
    return (connection or default_connection).features.has_select_for_update


def has_skip_locked(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``FOR UPDATE OF t SKIP LOCKED``: claimers pass over rows another claimer locked."""
    features = (connection or default_connection).features
    return features.has_select_for_update_skip_locked and features.has_select_for_update_of


def has_concurrent_readers(connection: BaseDatabaseWrapper | None = None) -> bool:
    """A second connection (another thread's) reads while this one is in use, each
    served by a process of its own. SQLite, the demo's single file, is left to one
    connection at a time."""
    return _postgresql(connection)


def has_arrays(connection: BaseDatabaseWrapper | None = None) -> bool:
    """Array columns and ``ARRAY(subquery)`` (``real[]``, ``ArraySubquery``, ``unnest``)."""
    return _postgresql(connection)


def has_nan(connection: BaseDatabaseWrapper | None = None) -> bool:
    """NaN in float columns (SQLite stores a NaN as NULL)."""
    return _postgresql(connection)


def has_copy(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``COPY ... FROM STDIN`` for bulk writes."""
    return _postgresql(connection)


def has_advisory_locks(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``pg_advisory_xact_lock``: a lock on a number, held to the commit."""
    return _postgresql(connection)


def has_seeded_hash(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``hashint8extended(value, seed)``: a reproducible permutation per seed in SQL."""
    return _postgresql(connection)


def has_writable_cte(connection: BaseDatabaseWrapper | None = None) -> bool:
    """A data-modifying ``WITH`` (``WITH d AS (DELETE ...) UPDATE ...``) in one statement."""
    return _postgresql(connection)


def has_transaction_settings(connection: BaseDatabaseWrapper | None = None) -> bool:
    """``SET LOCAL`` (``synchronous_commit``, ``statement_timeout``) for one transaction."""
    return _postgresql(connection)


def has_analytics(connection: BaseDatabaseWrapper | None = None) -> bool:
    """The aggregates the dashboards are written in (``FILTER``, ``width_bucket``,
    ``array_agg``, ``percentile_cont``)."""
    return _postgresql(connection)


def is_a_number_sql(column: str, connection: BaseDatabaseWrapper | None = None) -> str:
    """A condition true when the float ``column`` holds a number (not NULL, not NaN).

    PostgreSQL stores NaN (and ``x <> 'NaN'`` is false for NULL too, so one comparison
    says both); SQLite stores a NaN as NULL, and would compare a number with the text
    ``'NaN'`` as unequal whatever it holds."""
    if _postgresql(connection):
        return f"{column} <> 'NaN'"
    return f"{column} IS NOT NULL"
