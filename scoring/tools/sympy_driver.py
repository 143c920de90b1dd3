"""The SymPy side of :mod:`scoring.tools.sympy_check`: this file's *text* is the code that
the sandbox runs (it is never imported), reading one JSON request on stdin and printing one
JSON answer as its last line.

The request's expressions were already screened by ``sympy_check.screen`` (no quotes,
underscores, attribute access, brackets or keywords), and ``parse_expr`` evaluates them in a
namespace holding only the math names below and no builtins: the names an expression can
reach are SymPy's math functions and constants, and the sandbox bounds what they cost.
"""

from __future__ import annotations

import json
import random
import sys

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication,
    parse_expr,
    rationalize,
    standard_transformations,
)

TRANSFORMATIONS = (*standard_transformations, implicit_multiplication, convert_xor, rationalize)
MATH_NAMES = [
    "sqrt",
    "cbrt",
    "root",
    "exp",
    "log",
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "asin",
    "acos",
    "atan",
    "acot",
    "sinh",
    "cosh",
    "tanh",
    "Abs",
    "factorial",
    "binomial",
    "gcd",
    "lcm",
    "floor",
    "ceiling",
    "pi",
    "E",
    "I",
    "oo",
    "Min",
    "Max",
    "re",
    "im",
]
SAMPLE_POINTS = 6
SAMPLE_TRIES = 30
RELATIVE = 1e-9


def namespace() -> dict:
    names = {name: getattr(sympy, name) for name in MATH_NAMES}
    names |= {"ln": sympy.log, "abs": sympy.Abs, "e": sympy.E, "inf": sympy.oo}
    # What parse_expr's own transformations write into the code it evaluates.
    for name in ("Symbol", "Integer", "Float", "Rational", "Function"):
        names[name] = getattr(sympy, name)
    return {"__builtins__": {}, **names}


def parse(text: str) -> sympy.Expr:
    return parse_expr(text, local_dict={}, global_dict=namespace(), transformations=TRANSFORMATIONS)


def finite(value: complex) -> bool:
    return value == value and abs(value) != float("inf")


def show(value: complex) -> str:
    return f"{value.real:.6g}" if value.imag == 0 else f"{value:.6g}"


def number(expr: sympy.Expr) -> complex:
    return complex(sympy.N(expr, 30))


def compare(a: sympy.Expr, b: sympy.Expr, tolerance: float) -> tuple[str, str]:
    """(decision, how): symbolic simplification first, then numbers."""
    if sympy.simplify(a - b) == 0:
        return "correct", "symbolic: the difference simplifies to 0"
    free = sorted(a.free_symbols | b.free_symbols, key=str)
    if not free:
        va, vb = number(a), number(b)
        if not (finite(va) and finite(vb)):
            return "undecided", f"not finite: {show(va)}, {show(vb)}"
        # Exactly, at 50 digits: |3 - 3.1| is 0.1 here, not 0.10000000000000009.
        gap = sympy.Abs(a - b)
        over = sympy.N(gap - sympy.Rational(str(tolerance)), 50)
        decision = "correct" if over <= sympy.Float("1e-40") else "wrong"
        gap_text = f"{float(sympy.N(gap, 30)):.3g}"
        return decision, f"numeric: |{show(va)} - {show(vb)}| = {gap_text}, tolerance {tolerance}"
    # The reference's judge substitutes values into expressions; a fixed seed keeps the
    # verdict reproducible.
    rng = random.Random(0)
    agreed = 0
    for _ in range(SAMPLE_TRIES):
        point = {s: sympy.Rational(rng.randint(-40, 40), rng.randint(1, 7)) for s in free}
        try:
            va, vb = number(a.subs(point)), number(b.subs(point))
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if not (finite(va) and finite(vb)):
            continue
        if abs(va - vb) > RELATIVE * max(1.0, abs(va), abs(vb)):
            return "wrong", f"sampled: {show(va)} != {show(vb)} at {point}"
        agreed += 1
        if agreed == SAMPLE_POINTS:
            return "correct", f"sampled: equal at {SAMPLE_POINTS} points"
    return "undecided", f"sampled: only {agreed} finite points"


def equivalent(request: dict) -> dict:
    a, b = parse(request["expected"]), parse(request["actual"])
    decision, how = compare(a, b, request["tolerance"])
    return {"decision": decision, "how": how, "expected": str(a), "actual": str(b)}


def solve(request: dict) -> dict:
    variable = sympy.Symbol(request["variable"], real=True)
    lhs, rhs = (parse(side) for side in request["equation"])
    plain = sympy.Symbol(request["variable"])
    equation = (lhs - rhs).subs(plain, variable)
    solutions = [s for s in sympy.solve(equation, variable) if not s.has(sympy.I)]
    claimed = [parse(value).subs(plain, variable) for value in request["claimed"]]
    matched: set[int] = set()
    for value in claimed:
        hits = [
            i
            for i, s in enumerate(solutions)
            if compare(s, value, request["tolerance"])[0] == "correct"
        ]
        if not hits:
            return answer_solve("wrong", f"{value} is not a solution", solutions)
        matched.update(hits)
    if request["all_solutions"] and len(matched) < len(solutions):
        return answer_solve("wrong", "some solutions are not claimed", solutions)
    return answer_solve("correct", "every claimed value is a solution", solutions)


def answer_solve(decision: str, how: str, solutions: list) -> dict:
    return {"decision": decision, "how": how, "solutions": [str(s) for s in solutions]}


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        result = equivalent(request) if request["task"] == "equivalent" else solve(request)
    except (SyntaxError, TypeError, ValueError, AttributeError, NotImplementedError) as error:
        result = {"decision": "undecided", "how": f"{type(error).__name__}: {error}"}
    print(json.dumps(result))


if __name__ == "__main__":  # the sandbox runs this text as __main__
    main()
