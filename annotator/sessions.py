"""Django's database sessions, refusing session keys Django never issues.

Django checks only a key's length before looking it up, so a ``sessionid`` cookie
holding a NUL byte reached PostgreSQL, which refuses NUL in text: a 500 on every page
for whoever sent it (found by the API's schemathesis run). Django's keys are 32
lower-case letters and digits; anything else is no session, as an unknown key is.
"""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and key.isascii() and key.isalnum() and super()._validate_session_key(key)
