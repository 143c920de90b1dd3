"""What the benchmarks share."""

from __future__ import annotations

import os
import secrets


def database_name(bench: str) -> str:
    """A database of this run's own for benchmark ``bench``
    (``stepwise_bench_<bench>_<pid>_<random>``): with a fixed name a second run started
    meanwhile dropped the first one's database (``setup_databases`` drops a database of
    the same name first)."""
    return f"stepwise_bench_{bench}_{os.getpid()}_{secrets.token_hex(4)}"
