"""A tool's verdict on one query, with its transcript."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Decision = Literal["correct", "wrong", "error"]

# Why a tool gave no answer (``ToolVerdict.error_kind``).
TIMEOUT = "timeout"  # wall clock or CPU time ran out
MEMORY = "memory"  # the address-space limit was hit
OUTPUT = "output"  # stdout and stderr together passed the output cap
REFUSED = "refused"  # the code tried a refused operation (files, network, processes)
EXCEPTION = "exception"  # the code raised, exited non-zero or died of a signal
UNAVAILABLE = "unavailable"  # the sandbox could not isolate the code, so it did not run it
INVALID = "invalid"  # the query is not one the tool accepts (unparsable, too long, unsafe)
UNDECIDED = "undecided"  # the tool ran but could not decide (e.g. no finite sample point)
ERROR_KINDS = (TIMEOUT, MEMORY, OUTPUT, REFUSED, EXCEPTION, UNAVAILABLE, INVALID, UNDECIDED)


@dataclass(frozen=True)
class ToolVerdict:
    """What a tool was asked, what it answered, and the decision taken from that answer.

    ``error_kind`` is set exactly when ``decision == "error"``; ``detail`` says more in words
    (the refused operation, the method that decided: ``symbolic``, ``numeric``, ``sampled``).
    """

    tool: str
    query: str
    output: str
    decision: Decision
    error_kind: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.decision == "error") != (self.error_kind is not None):
            raise ValueError("error_kind is set exactly when the decision is 'error'")
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {self.error_kind!r}")

    def to_dict(self) -> dict[str, str | None]:
        """The transcript as plain JSON data (for the search tree's export)."""
        return {
            "tool": self.tool,
            "query": self.query,
            "output": self.output,
            "decision": self.decision,
            "error_kind": self.error_kind,
            "detail": self.detail,
        }
