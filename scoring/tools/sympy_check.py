"""SymPy checks of a step's claim: are two expressions equal, does a value solve an equation.

Expressions are plain math, not LaTeX: ``2*x + 1``, ``x^2``, ``2x``, ``sqrt(8)/2``,
``pi/4``, ``3.14``; ``name = expr`` stands for ``expr`` (a step's ``\\boxed{param = expr}``).

How closeness is judged follows the GroundedPRM reference's verification prompt
(``pipeline/prompts/instructions.py`` lines 196-199 in JerryPlain/GroundedPRMCode at
76ec81e): "When WA returns a precise numerical value: the absolute error between the LLM
result and the WA value must be ≤ 0.1" (also ``MATH_VERIFY_TOLERANCE = 0.1``, "Absolute error
tolerance for numerical comparison", ``config.example.py`` line 34, which the released code
never reads) and "When WA returns a mathematical expression: verify algebraic equivalence
(...) consistency should be validated by substituting any values". So, in order:

1. ``simplify(a - b) == 0``: equal (``symbolic``);
2. no free symbols: equal when ``|a - b| <= tolerance`` (absolute, 0.1 by default, as the
   reference; ``numeric``): ``3.14`` is accepted for ``pi``, and ``3.05`` for ``3``;
3. free symbols: values are substituted at seeded random rational points, and the two must
   agree to a relative 1e-9 at six finite points (``sampled``); the absolute tolerance is for
   numbers, not for functions.

Where the reference's judge is an LLM reading Wolfram|Alpha's text, this is the comparison
done by SymPy; ranges ("contained in the range", its line 198) are not supported.

Safety: ``parse_expr`` evaluates (as ``sympify`` does), so a query is first screened here
(length cap, plain math characters only: no quotes, underscores, brackets, attribute access or
Python keywords), then parsed inside the sandbox (:mod:`scoring.tools.sandbox`) in a namespace
of math names without builtins. The sandbox bounds CPU, memory and wall time, so a hostile
expression (``9^9^9^9``) ends as a ``timeout`` or ``memory`` error, never a hung worker.
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path

from scoring.tools.sandbox import Limits, run_python
from scoring.tools.verdict import INVALID, UNDECIDED, ToolVerdict

MAX_CHARS = 300
TOLERANCE = 0.1
LIMITS = Limits(cpu_seconds=10, wall_seconds=30.0, memory_bytes=1024 * 2**20)
DRIVER = Path(__file__).with_name("sympy_driver.py")

_CHARACTERS = re.compile(r"[0-9A-Za-z+\-*/^().,!= \t]+")
_ATTRIBUTE = re.compile(r"[A-Za-z)]\s*\.|\.\s*[A-Za-z(]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_ASSIGNED = re.compile(r"^\s*[A-Za-z][A-Za-z0-9]*\s*=(?!=)(.*)$", re.DOTALL)


class UnsafeQuery(ValueError):
    """A query the checker refuses to hand to the parser."""


def screen(text: str) -> str:
    """``text`` stripped, or :class:`UnsafeQuery` if it is not plain, short math.

    >>> screen(" 2x^2 + sqrt(8) ")
    '2x^2 + sqrt(8)'
    >>> screen("__import__('os')")
    Traceback (most recent call last):
    ...
    scoring.tools.sympy_check.UnsafeQuery: not plain math: "__import__('os')"
    """
    text = text.strip()
    if not text:
        raise UnsafeQuery("empty expression")
    if len(text) > MAX_CHARS:
        raise UnsafeQuery(f"longer than {MAX_CHARS} characters")
    if not _CHARACTERS.fullmatch(text) or _ATTRIBUTE.search(text):
        raise UnsafeQuery(f"not plain math: {text!r}")
    for name in _NAME.findall(text):
        if keyword.iskeyword(name) or keyword.issoftkeyword(name):
            raise UnsafeQuery(f"not plain math: {name!r} is a Python keyword")
    return text


def _value(text: str) -> str:
    """The expression of ``name = expr``, else the text; one ``=`` at most."""
    text = screen(text)
    match = _ASSIGNED.match(text)
    if match:
        text = screen(match.group(1))
    if "=" in text:
        raise UnsafeQuery(f"an equation where a value was expected: {text!r}")
    return text


def _run(tool: str, query: str, request: dict, limits: Limits) -> ToolVerdict:
    run = run_python(DRIVER.read_text(), limits, stdin=json.dumps(request).encode())
    if run.error_kind is not None:
        output = run.stdout + run.stderr
        return ToolVerdict(tool, query, output, "error", run.error_kind, run.detail)
    lines = run.stdout.strip().splitlines()
    answer = json.loads(lines[-1])
    output = json.dumps(answer)
    if answer["decision"] == "undecided":
        return ToolVerdict(tool, query, output, "error", UNDECIDED, answer["how"])
    return ToolVerdict(tool, query, output, answer["decision"], None, answer["how"])


def check_equivalent(
    expected: str, actual: str, tolerance: float = TOLERANCE, limits: Limits = LIMITS
) -> ToolVerdict:
    """Is ``actual`` equal to ``expected``? ``correct``, ``wrong``, or ``error`` with a kind.

    >>> check_equivalent("sqrt(8)", "2*sqrt(2)").decision  # doctest: +SKIP
    'correct'
    """
    query = f"{expected} == {actual}"
    try:
        request = {
            "task": "equivalent",
            "expected": _value(expected),
            "actual": _value(actual),
            "tolerance": tolerance,
        }
    except UnsafeQuery as error:
        return ToolVerdict("sympy", query, "", "error", INVALID, str(error))
    return _run("sympy", query, request, limits)


def check_solution(
    equation: str,
    variable: str,
    claimed: str,
    *,
    all_solutions: bool = True,
    tolerance: float = TOLERANCE,
    limits: Limits = LIMITS,
) -> ToolVerdict:
    """Does ``claimed`` solve ``equation`` for ``variable`` over the reals?

    ``claimed`` lists values separated by commas or ``or``, each optionally written
    ``x = value`` (``"x = 2 or x = -2"``, ``"2, -2"``). Every claimed value must be a real
    solution (within ``tolerance``); with ``all_solutions`` every real solution must be
    claimed too. An equation without ``=`` means ``expr = 0``. The transcript's output lists
    the solutions SymPy found.
    """
    query = f"solve {equation} for {variable}; claimed {claimed}"
    try:
        text = screen(equation)
        sides = text.split("=")
        if len(sides) > 2:
            raise UnsafeQuery("more than one '=' in the equation")
        if len(sides) == 1:
            sides.append("0")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", variable) or keyword.iskeyword(variable):
            raise UnsafeQuery(f"not a variable name: {variable!r}")
        if len(claimed) > MAX_CHARS:
            raise UnsafeQuery(f"claim longer than {MAX_CHARS} characters")
        values = [_value(v) for v in re.split(r",|\bor\b", claimed)]
        request = {
            "task": "solve",
            "equation": [screen(side) for side in sides],
            "variable": variable,
            "claimed": values,
            "all_solutions": all_solutions,
            "tolerance": tolerance,
        }
    except UnsafeQuery as error:
        return ToolVerdict("sympy-solve", query, "", "error", INVALID, str(error))
    return _run("sympy-solve", query, request, limits)
