"""``arithmetic-check``: a model-free, tool-grounded step scorer.

Every arithmetic claim written in a step (``a op b = c`` chains in prose or LaTeX, and
GSM8K calculator notes ``<<a*b=c>>``) is re-computed exactly with :class:`fractions.Fraction`
arithmetic. A step scores 0.0 when one of its claims is false, else 1.0.

What it catches: slips such as ``495 * 15 = 7455`` or ``\\(18 - 6 = 13\\)``.

What it cannot catch, by design: a wrong *setup* with correct arithmetic (using the wrong
quantity, the wrong operation, misreading the problem), wrong claims stated in words
("half of 18 is 8"), algebra with variables, and anything not written as ``expr = value``.
Most ProcessBench errors are of those kinds, so this is a high-precision, low-recall hint
for annotators and a CPU baseline, not a PRM. Stated results are accepted when they equal
the exact value rounded to the number of decimals written (``10/3 = 3.33`` is fine).

No torch, no model: this module imports only the standard library.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

from scoring.types import StepScores, Trace


@dataclass(frozen=True)
class Claim:
    """One checked equation ``lhs = rhs`` found in a step."""

    lhs: str
    rhs: str
    lhs_value: Fraction
    rhs_value: Fraction
    ok: bool

    @property
    def text(self) -> str:
        return f"{self.lhs} = {self.rhs}"


_CALC_NOTE = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WORD = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d+)?%?)|(?P<op>[-+*/^])|(?P<lpar>\()|(?P<rpar>\))|(?P<eq>=)"
    r"|(?P<word>[A-Za-z_']+)|(?P<space>\s+)|(?P<other>.)"
)
_WORD_OPS = {"times": "*", "plus": "+", "minus": "-", "x": "*", "X": "*"}
_MAX_UNIT_WORDS = 2
# The work per step is linear in its length: the tokens are scanned once, and each
# claim is bounded: a side of at most MAX_SIDE_CHARS characters (about 100 operations),
# every intermediate value within MAX_VALUE_BITS bits (a 300-digit number).
MAX_SIDE_CHARS = 200
MAX_VALUE_BITS = 1024


def _normalise(text: str) -> str:
    """LaTeX and typography to plain ASCII arithmetic: ``\\frac{1}{3} \\times 18`` -> ``((1)/(3)) * 18``.

    Math delimiters and newlines become ``;`` so that each formula or line is its own run.
    """
    text = _CALC_NOTE.sub(" ", text)
    text = _LATEX_WORD.sub(r" \1 ", text)
    for _ in range(5):  # nested fractions, innermost first
        text, n = _FRAC.subn(r"((\1)/(\2))", text)
        if not n:
            break
    replacements = {
        r"\times": "*", r"\cdot": "*", r"\ast": "*", r"\div": "/", r"\left": "", r"\right": "",
        r"\(": " ; ", r"\)": " ; ", r"\[": " ; ", r"\]": " ; ", "\n": " ; ", r"\$": "", r"\%": "%", r"\,": "",
        r"\!": "", r"\;": " ", r"\boxed": "", "**": " ", "×": "*", "÷": "/", "·": "*",
        "⋅": "*", "−": "-", "$": "", "{": "(", "}": ")",
    }  # fmt: skip
    for old, new in replacements.items():
        text = text.replace(old, new)
    return _THOUSANDS.sub("", text)


def _bounded(value: Fraction) -> Fraction:
    """``value``, or ValueError when it is too large to be a claim anyone checks by
    hand: every intermediate result stays under :data:`MAX_VALUE_BITS`, so each
    operation costs a bounded amount (``9^64^64`` would otherwise have a million
    digits)."""
    if (
        value.numerator.bit_length() > MAX_VALUE_BITS
        or value.denominator.bit_length() > MAX_VALUE_BITS
    ):
        raise ValueError("too large")
    return value


def _evaluate(expr: str) -> Fraction | None:
    """Exact value of a plain arithmetic expression, or None if it is not one."""
    try:
        tree = ast.parse(expr.replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError):
        return None

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return _bounded(Fraction(str(node.value)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return _bounded(left + right)
            if isinstance(node.op, ast.Sub):
                return _bounded(left - right)
            if isinstance(node.op, ast.Mult):
                return _bounded(left * right)
            if isinstance(node.op, ast.Div):
                return _bounded(left / right)
            if isinstance(node.op, ast.Pow) and right.denominator == 1 and abs(right) <= 64:
                bits = max(left.numerator.bit_length(), left.denominator.bit_length())
                if bits * abs(int(right)) > MAX_VALUE_BITS:  # refused before it is computed
                    raise ValueError("too large")
                return left ** int(right)
        raise ValueError("not plain arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _has_operator(expr: str) -> bool:
    return bool(re.search(r"(?<=[\d)%])\s*[-+*/^]", expr))


def _decimals(expr: str) -> int | None:
    """Decimals written in a bare number (``"3.33"`` -> 2), None if ``expr`` is not one."""
    m = re.fullmatch(r"\s*-?\(?\s*\d+(?:\.(\d+))?\s*%?\s*\)?\s*", expr)
    if not m:
        return None
    return len(m.group(1) or "")


def _agrees(lhs: str, lhs_value: Fraction, rhs: str, rhs_value: Fraction) -> bool:
    if lhs_value == rhs_value:
        return True
    # A stated result may be the exact value rounded or truncated to the decimals it shows
    # ("10/3 = 3.33", "0.2 * 85.98 = 17.19", "43/5 = 8 full pens with 3 left").
    for stated, value, exact in ((rhs, rhs_value, lhs_value), (lhs, lhs_value, rhs_value)):
        decimals = _decimals(stated)
        other = lhs if stated is rhs else rhs
        if (
            decimals is not None
            and _has_operator(other)
            and abs(exact - value) < Fraction(1, 10**decimals)
        ):
            return True
    return False


def _check(lhs: str, rhs: str) -> Claim | None:
    """A :class:`Claim` if both sides are arithmetic and one side computes something.

    A side longer than :data:`MAX_SIDE_CHARS` is not checked (a claim written by a
    person is far shorter; parsing and evaluating it would cost time, and recursion,
    growing with its length)."""
    lhs, rhs = _trim_parens(lhs), _trim_parens(rhs)
    if len(lhs) > MAX_SIDE_CHARS or len(rhs) > MAX_SIDE_CHARS:
        return None
    if not lhs or not rhs or not (_has_operator(lhs) or _has_operator(rhs)):
        return None
    lhs_value, rhs_value = _evaluate(lhs.replace("%", "/100")), _evaluate(rhs.replace("%", "/100"))
    if lhs_value is None or rhs_value is None:
        return None
    ok = _agrees(lhs, lhs_value, rhs, rhs_value)
    if not ok and "%" in lhs + rhs:
        # "0.6 * 100 = 60%" uses % as a unit label rather than as /100
        plain_lhs, plain_rhs = _evaluate(lhs.replace("%", "")), _evaluate(rhs.replace("%", ""))
        if plain_lhs is not None and plain_rhs is not None:
            ok = _agrees(lhs, plain_lhs, rhs, plain_rhs)
    return Claim(lhs, rhs, lhs_value, rhs_value, ok)


def _trim_parens(expr: str) -> str:
    """``expr`` without the unmatched parentheses at its ends: ``"(3 + 4"`` -> ``"3 + 4"``.
    Counted once, then kept up to date: one pass, whatever the length."""
    expr = expr.strip()
    opens, closes = expr.count("("), expr.count(")")
    start, end = 0, len(expr)
    while start < end and expr[start] == "(" and opens > closes:
        start += 1
        opens -= 1
        while start < end and expr[start].isspace():
            start += 1
    while end > start and expr[end - 1] == ")" and closes > opens:
        end -= 1
        closes -= 1
        while end > start and expr[end - 1].isspace():
            end -= 1
    return expr[start:end]


def _segments(text: str) -> list[list[str]]:
    """Runs of arithmetic tokens (numbers, operators, parentheses, ``=``).

    Unit words right after a number are skipped (``33 classes * 15 students/class``), a
    word glued to a number (``2x``, ``5th``) voids that number, and any other word or
    punctuation ends the run.
    """
    # Spaces dropped up front, so a token's neighbours are its list neighbours: one pass
    # over the tokens, each looked at a bounded number of times (looking the neighbours
    # up by slicing the list, as this once did, cost a copy of it per token: 12.6 s for
    # a 64k-character step, and a 417 KB one never finished). Whether spaces separated
    # two tokens is told by their offsets.
    tokens = [
        (m.lastgroup, m.group(), m.start(), m.end())
        for m in _TOKEN.finditer(text)
        if m.lastgroup != "space"
    ]
    segments: list[list[str]] = []
    current: list[str] = []
    unit_words = 0  # words skipped since the last number; -1: not after a number

    def close() -> None:
        nonlocal current
        if current:
            segments.append(current)
        current = []

    i = 0
    while i < len(tokens):
        kind, value, start, _ = tokens[i]
        prev = tokens[i - 1] if i > 0 else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "num":
            if current and current[-1] not in "+-*/^(=" and unit_words != 0:
                close()  # "10 apples 5 - 3": a new run starts at 5
            elif current and current[-1] == ")":
                close()
            current.append(value)
            unit_words = 0
        elif kind == "word":
            glued = prev is not None and prev[0] in ("num", "rpar") and prev[3] == start
            # "2 x 3" and "2x3" multiply; "2x + 1" is algebra (handled as glued below)
            algebra = glued and value in ("x", "X") and nxt is not None and nxt[2] != tokens[i][3]
            if (
                value in _WORD_OPS
                and current
                and nxt is not None
                and nxt[0] in ("num", "lpar")
                and not algebra
            ):
                current.append(_WORD_OPS[value])
                unit_words = 0
                i += 1
                continue
            if glued:
                # "2x", "(2/3)x", "5th": a variable or ordinal, so this run is algebra.
                current = []
                unit_words = -1
            elif current and current[-1] not in "+-*/^(=" and 0 <= unit_words < _MAX_UNIT_WORDS:
                unit_words += 1  # a unit after a number: "15 students"
            else:
                close()
                unit_words = -1
        elif kind == "op":
            if (
                value == "/"
                and nxt is not None
                and nxt[0] == "word"
                and unit_words >= 0
                and current
            ):
                # A rate unit: "15 students/class" skips the unit too; with a space
                # after the "/" the unit is read next as a unit word.
                i += 2 if nxt[2] == tokens[i][3] else 1
                unit_words = max(unit_words, 1)
                continue
            current.append(value)
            unit_words = -1
        elif kind == "lpar":
            if current and unit_words > 0:
                close()  # "138 lines (138)": not a product
            elif current and (current[-1][-1].isdigit() or current[-1] in (")", "%")):
                current.append("*")
            current.append(value)
            unit_words = -1
        elif kind in ("rpar", "eq"):
            if kind == "rpar" and unit_words > 0:
                current = []  # "(1 dozen) / (1/4 pound)": labelled quantities, not arithmetic
                unit_words = -1
                i += 1
                continue
            current.append(value)
            unit_words = 0 if kind == "rpar" else -1
        else:
            close()
            unit_words = -1
        i += 1
    close()
    return segments


def find_claims(text: str) -> list[Claim]:
    """Every checkable ``lhs = rhs`` claim in ``text``, true or false.

    >>> [c.ok for c in find_claims("So 33 * 15 = 495 students and 495 * $15 = $7455.")]
    [True, False]
    """
    claims: list[Claim] = []
    for m in _CALC_NOTE.finditer(text):
        claim = _check(_normalise(m.group(1)), _normalise(m.group(2)))
        if claim is not None:
            claims.append(claim)
    for segment in _segments(_normalise(text)):
        sides = " ".join(segment).split("=")
        if len(sides) < 2:
            continue
        # A run that starts with an operator lost its left operand to a word: "n - 5 = 10".
        if (
            sides[0].strip()[:1] in ("+", "-", "*", "/", "^")
            or sides
            and not _has_operator(_trim_parens(sides[0]))
        ):
            sides = sides[1:]
        for lhs, rhs in zip(sides, sides[1:], strict=False):
            claim = _check(lhs, rhs)
            if claim is not None:
                claims.append(claim)
    return claims


def false_claims(text: str) -> list[Claim]:
    """The claims in ``text`` whose two sides differ."""
    return [claim for claim in find_claims(text) if not claim.ok]


class ArithmeticCheck:
    """Adapter ``arithmetic-check``: step score 0.0 if a claim in it is false, else 1.0."""

    name = "arithmetic-check"
    model_name = ""

    def score_trace(self, trace: Trace) -> StepScores:
        scores: list[float] = []
        flagged: dict[int, list[str]] = {}
        for index, step in enumerate(trace.steps):
            wrong = false_claims(step)
            if wrong:
                flagged[index] = [claim.text for claim in wrong]
            scores.append(0.0 if wrong else 1.0)
        return StepScores(
            trace_id=trace.id,
            scores=tuple(scores),
            adapter=self.name,
            details={"false_claims": flagged} if flagged else {},
        )
