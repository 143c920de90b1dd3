"""``annotator/database.py`` on the suite's PostgreSQL: every feature is there, and
the number test leaves out NULL and NaN. (The SQLite answers: the embedded demo's test,
tests/annotator/test_embedded_demo.py, which ranks and claims through every queue
order there.)"""

from __future__ import annotations

import pytest
from django.db import connection

from annotator import database

pytestmark = pytest.mark.django_db


def test_postgresql_has_every_feature_asked_about():
    assert database.has_row_locks() and database.has_skip_locked()
    assert database.has_arrays() and database.has_copy() and database.has_advisory_locks()
    assert database.has_seeded_hash() and database.has_writable_cte()
    assert database.has_transaction_settings() and database.has_analytics()


def test_a_number_is_neither_null_nor_nan():
    condition = database.is_a_number_sql("v")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT v FROM (VALUES (1.5::real), (NULL), ('NaN'::real)) AS t(v) WHERE {condition}"
        )
        assert cursor.fetchall() == [(1.5,)]
