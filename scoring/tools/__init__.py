"""Local tools that check a step, each returning a :class:`ToolVerdict` with its transcript.

GroundedPRM asks Wolfram|Alpha; these run here, with no network:

* :func:`check_equivalent` and :func:`check_solution`: SymPy (``sympy_check``), run inside
  the sandbox;
* :func:`check_arithmetic`: the exact arithmetic check of ``scoring.arithmetic``;
* :func:`run_code`: model-written Python in the sandbox (``sandbox``, ``jail``).

Nothing here imports SymPy or torch: SymPy runs in the sandbox's own process.
"""

from __future__ import annotations

from scoring.arithmetic import find_claims
from scoring.tools.sandbox import Execution, Limits, run_python
from scoring.tools.sympy_check import check_equivalent, check_solution
from scoring.tools.verdict import ERROR_KINDS, INVALID, UNDECIDED, ToolVerdict

__all__ = [
    "ERROR_KINDS",
    "Execution",
    "Limits",
    "ToolVerdict",
    "check_arithmetic",
    "check_equivalent",
    "check_solution",
    "run_code",
    "run_python",
]


def check_arithmetic(step: str) -> ToolVerdict:
    """Every ``a op b = c`` claim in ``step`` recomputed exactly: ``wrong`` if one is false,
    ``correct`` if all hold, an ``undecided`` error if the step states none.

    >>> check_arithmetic("So 33 * 15 = 495 students.").decision
    'correct'
    """
    claims = find_claims(step)
    output = "\n".join(f"{c.text}: {'true' if c.ok else 'false'}" for c in claims)
    if not claims:
        return ToolVerdict("arithmetic", step, output, "error", UNDECIDED, "no arithmetic claim")
    decision = "correct" if all(c.ok for c in claims) else "wrong"
    return ToolVerdict("arithmetic", step, output, decision)


def run_code(code: str, expected: str | None = None, limits: Limits = Limits()) -> ToolVerdict:  # noqa: B008 (frozen)
    """Run model-written checking code in the sandbox.

    With ``expected`` (the step's claimed value), the last line the code prints is compared
    with it by :func:`check_equivalent`: ``correct`` or ``wrong``. Without it, ``correct`` only
    says that the code ran to a clean end, and its output is the evidence for a judge.
    Any failure of the run is an ``error`` with the sandbox's kind.
    """
    run = run_python(code, limits)
    output = run.stdout if not run.stderr else f"{run.stdout}\n[stderr]\n{run.stderr}"
    if run.error_kind is not None:
        return ToolVerdict("python", code, output, "error", run.error_kind, run.detail)
    if expected is None:
        return ToolVerdict("python", code, output, "correct", None, "ran to a clean end")
    printed = [line for line in run.stdout.splitlines() if line.strip()]
    if not printed:
        return ToolVerdict("python", code, output, "error", INVALID, "the code printed nothing")
    comparison = check_equivalent(expected, printed[-1])
    detail = f"printed {printed[-1]!r}, claimed {expected!r}: {comparison.detail}"
    return ToolVerdict("python", code, output, comparison.decision, comparison.error_kind, detail)
