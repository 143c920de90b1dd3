"""Final-answer extraction and grading.

``math-verify`` does the comparison (gold first, as its docs require). SymPy can hang on
pathological input, so every call runs under a timeout: math-verify's own signal-based
timeout in the main thread, a killable child process elsewhere (signals only work in the
main thread). When math-verify cannot decide, a normalised exact match is the fallback.
"""

from __future__ import annotations

import re
import threading

_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\s*(.+?)(?:\.\s|\.$|$|\n)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_A_COLON = re.compile(r"(?:^|\n)\s*A:\s*(.+?)\s*$")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces allowed."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i].strip()
    return None


def extract_answer(text: str) -> str | None:
    """The final answer written in a solution: the last ``\\boxed{}``, else GSM8K's
    ``#### x``, else a final ``A: x`` line, else "The answer is x"; None if none.

    >>> extract_answer("so 3 + 4 = 7.\\n#### 7")
    '7'
    >>> extract_answer("The answer is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_HASHES, _A_COLON):
        matches = pattern.findall(text)
        if matches:
            return matches[-1].strip()
    matches = _ANSWER_IS.findall(text)
    if matches:
        return matches[-1].strip().rstrip(".").strip()
    return None


def normalise_answer(answer: str) -> str:
    """Loose canonical form for exact matching: ``"$1,000.00"`` -> ``"1000"``."""
    text = answer.strip()
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|displaystyle|,|!|;|\$|%)", "", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("$", "").replace("%", "").replace(" ", "")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"^(-?\d+)\.0+$", r"\1", text)
    text = re.sub(r"^(-?\d+\.\d*?)0+$", r"\1", text)
    return text.rstrip(".").lower()


def _verify(gold: str, pred: str, timeout_s: int) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout_s)
    pred_parsed = parse(_as_latex(pred), parsing_timeout=timeout_s)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s))


def _verify_untimed(gold: str, pred: str) -> bool:
    import logging

    from math_verify import parse, verify

    # In the child the parent enforces the timeout; silence math-verify's warning about it.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    gold_parsed = parse(_as_latex(gold), parsing_timeout=None)
    pred_parsed = parse(_as_latex(pred), parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _as_latex(answer: str) -> str:
    # math-verify looks for an anchor such as $...$ or \boxed{}; give it one.
    return answer if ("\\boxed" in answer or "$" in answer) else f"${answer}$"


def _verify_in_child(gold: str, pred: str, timeout_s: float) -> bool | None:
    """Run math-verify in a child process we can kill; None on timeout."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_verify_untimed, (gold, pred))
        try:
            return result.get(timeout=timeout_s)
        except multiprocessing.TimeoutError:
            pool.terminate()
            return None


def answers_match(gold: str, pred: str | None, timeout_s: int = 5) -> bool:
    """Whether ``pred`` equals ``gold``: math-verify under a timeout, else exact match of
    the normalised strings."""
    if pred is None:
        return False
    if normalise_answer(gold) == normalise_answer(pred):
        return True
    try:
        if threading.current_thread() is threading.main_thread():
            return _verify(gold, pred, timeout_s)
        return bool(_verify_in_child(gold, pred, timeout_s))
    except Exception:  # math-verify raises on some malformed LaTeX; the exact match decided
        return False


def grade(solution: str, gold: str, timeout_s: int = 5) -> bool:
    """Extract the final answer from ``solution`` and compare it with ``gold``. ``gold`` may be
    a bare answer or a full GSM8K reference solution ending in ``#### x``."""
    gold_answer = extract_answer(gold) if ("####" in gold or "\\boxed" in gold) else gold
    return answers_match(gold_answer or gold, extract_answer(solution), timeout_s)
