"""Checking one generated step: a local tool's verdict, then the judge's decision.

The released pipeline (``JerryPlain/GroundedPRMCode``) asks Wolfram|Alpha: ``update_state``
(``pipeline/MCTS/mcts.py`` lines 291-312) has a model write a query for the step objective
(``get_wa_code``, ``pipeline/utils/output_utils.py`` lines 254-283, up to five tries, written
by the verifier model ``request_deepseek``), keeps the answer in ``wa_history``, and
``step_evaluate`` (``mcts.py`` lines 341-359) asks an LLM (``llm_verify``,
``pipeline/MCTS/mcts_utils.py`` lines 190-199) whether the step agrees with it, up to five
times until the answer holds ``True`` or ``False`` (1.0 / -1.0; 0.0 when all five fail).

Here the tool is local (:mod:`scoring.tools`), in this order, the first that applies:

1. **The boxed chain**: a ``\\boxed{param = e1 = e2}`` whose sides after the parameter name are
   plain math (LaTeX fractions, roots, ``\\cdot`` and powers are rewritten) is checked side by
   side with SymPy (:func:`scoring.tools.check_equivalent`): no query needed.
2. **Arithmetic claims** written in the action (``3 + 4 = 7``), recomputed exactly
   (:func:`scoring.tools.check_arithmetic`): no query needed. It comes second because it
   reads ``\\sqrt{49} \\cdot 5`` as ``(49) * 5``; SymPy reads the box right.
3. **A written query**: the query model (the judge's where there is one, as the released
   ``get_wa_code`` uses the verifier model; else the step generator) writes a Python program
   for the step objective, run in the sandbox (:func:`scoring.tools.run_code`; asked again,
   up to five tries, while the program fails to run), whose last printed line is compared
   with the step's boxed value. Where that value is not plain math
   the run's output is evidence for a judge, and the verdict is an ``undecided`` error.

Then ``judge=tool`` takes the tool's decision as the step's (an error leaves the step
undecided: value 0, as a released step whose five judgements failed); an LLM judge reads the
tool's transcript with the reference's verification structure (:mod:`.prompts`) and decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from scoring.grading import last_boxed
from scoring.grounded.prompts import VERIFY_PROMPT, query_prompt, verify_prompt
from scoring.montecarlo import Completer, Prompt
from scoring.tools import check_arithmetic, check_equivalent, run_code
from scoring.tools.sympy_check import UnsafeQuery, screen
from scoring.tools.verdict import (
    EXCEPTION,
    INVALID,
    MEMORY,
    OUTPUT,
    REFUSED,
    TIMEOUT,
    UNDECIDED,
    ToolVerdict,
)

JUDGE_ATTEMPTS = 5  # step_evaluate's count, mcts.py line 346
QUERY_ATTEMPTS = 5  # get_wa_code's try_count, output_utils.py line 257
# A program that did not run to its end: the query model is asked again.
RUN_FAILURES = (TIMEOUT, MEMORY, OUTPUT, REFUSED, EXCEPTION)

_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_PARAMETER = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9_']*(?:\([^()]*\))?|\\[A-Za-z]+)\s*$")


# --- reading a model's JSON ---------------------------------------------------------------------


def split_think(text: str) -> tuple[str, str]:
    """(the reasoning before ``</think>``, the rest), as ``fix_deepseek_ans`` splits it
    (``output_utils.py`` lines 286-289)."""
    if "</think>" in text:
        think, _, rest = text.partition("</think>")
        return think.replace("<think>", "").strip(), rest.strip()
    return "", text.strip()


def json_object(text: str) -> dict | None:
    """The first JSON object in a reply: a fenced block, else the first balanced ``{...}``
    (``fix_deepseek_ans``'s three patterns, lines 291-309); None if none parses."""
    candidates = [m.group(1) for m in _FENCED.finditer(text)]
    start = text.find("{")
    while start >= 0:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    candidates.append(text[start : end + 1])
                    break
        start = text.find("{", start + 1)
    for candidate in candidates:
        for attempt in (_escape_latex(candidate), candidate):
            try:
                value = json.loads(attempt, strict=False)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


_LONE_BACKSLASH = re.compile(r"\\\\|\\(?=n(?:eq|abla|ot|u\b|e\b|ewline))|\\(?=[A-Za-mo-z])")


def _escape_latex(text: str) -> str:
    """JSON text with LaTeX commands written with one backslash (``"\\frac{1}{2}"``, which
    JSON reads as a form feed and ``rac``) given a second one. A backslash before ``n`` stays
    a newline unless a LaTeX command follows (``\\neq``, ``\\not``); escaped backslashes stay.

    >>> _escape_latex('{"a": "\\\\frac{1}{2} \\\\\\\\pi\\\\n"}')
    '{"a": "\\\\\\\\frac{1}{2} \\\\\\\\pi\\\\n"}'
    """
    return _LONE_BACKSLASH.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else "\\\\", text)


def _field(text: str, *keys: str) -> str | None:
    """A ``"key": "value"`` pair read by pattern where the JSON does not parse
    (``parse_next_step``'s fallback, ``output_utils.py`` lines 186-197)."""
    for key in keys:
        match = re.search(rf'"{key}"\s*:\s*"(.*?)"\s*(?:,\s*"|\}}|$)', text, re.DOTALL)
        if match:
            return match.group(1)
    return None


def parse_step(text: str) -> tuple[str, str]:
    """(step objective, action) from a generated step (``parse_next_step`` and
    ``extract_json``, ``output_utils.py`` lines 162-197): its JSON, either key spelling,
    else the pair read by pattern, else no objective and the whole text as the action."""
    _, body = split_think(text)
    data = json_object(body)
    if data is not None:
        objective = data.get("step objective", data.get("step_objective"))
        action = data.get("action", data.get("actions"))
        if isinstance(objective, str) and isinstance(action, str):
            return objective.strip(), action.strip()
    objective = _field(body, "step objective", "step_objective")
    action = _field(body, "action", "actions")
    if objective is not None and action is not None:
        return objective.strip(), action.strip()
    return "", body


def step_result(action: str) -> str:
    """The step's conclusion, as ``extract_result`` reads it (``output_utils.py`` lines
    200-227): the last boxed content without trailing dots, else the whole action."""
    boxed = last_boxed(action)
    return boxed.strip(".") if boxed is not None else action


# --- LaTeX to plain math ---------------------------------------------------------------------------

_LATEX_WORDS = {
    "\\cdot": "*",
    "\\times": "*",
    "\\div": "/",
    "\\pi": "pi",
    "\\left": "",
    "\\right": "",
    "\\,": "",
    "\\!": "",
    "\\;": "",
    "\\dfrac": "\\frac",
    "\\tfrac": "\\frac",
}
_FRACTION = re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_ROOT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_POWER = re.compile(r"\^\s*\{([^{}]*)\}")


def plain_math(latex: str) -> str | None:
    """A LaTeX expression as plain math the SymPy checker takes, or None where it holds
    anything else (words, relations, unknown commands).

    >>> plain_math("\\\\frac{1}{4} \\\\cdot 2^{3}")
    '((1)/(4)) * 2^(3)'
    >>> plain_math("x \\\\le 3") is None
    True
    """
    text = latex.replace("$", "").strip().rstrip(".")
    for word, plain in _LATEX_WORDS.items():
        text = text.replace(word, plain)
    for pattern, replacement in (
        (_FRACTION, r"((\1)/(\2))"),
        (_ROOT, r"sqrt(\1)"),
        (_POWER, r"^(\1)"),
    ):
        while True:
            text, count = pattern.subn(replacement, text)
            if not count:
                break
    text = text.replace("{", "(").replace("}", ")")
    if "\\" in text:
        return None
    try:
        return screen(text)
    except UnsafeQuery:
        return None


def boxed_sides(action: str) -> list[str] | None:
    """The plain-math sides of the step's last ``\\boxed{}``, its leading parameter name
    dropped (``p = 3 \\cdot 7 = 21`` gives ``["3 * 7", "21"]``); None where there is no box,
    a relation other than ``=`` or a side that is not plain math."""
    boxed = last_boxed(action)
    if boxed is None or re.search(r"[<>]|\\[lg]eq?\b|\\neq?\b|!=|==", boxed):
        return None
    sides = boxed.split("=")
    if len(sides) > 1 and _PARAMETER.match(sides[0]):
        sides = sides[1:]
    plain = [plain_math(side) for side in sides]
    if any(side is None for side in plain):
        return None
    return [side for side in plain if side is not None]


# --- the tool -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepToCheck:
    """A step with the state it was generated in (``State``'s fields the checks read)."""

    objective: str
    action: str
    global_objective: str
    conditions: tuple[str, ...]


def _chain_verdict(sides: list[str]) -> ToolVerdict:
    verdicts = [check_equivalent(a, b) for a, b in zip(sides, sides[1:], strict=False)]
    query = " = ".join(sides)
    output = "\n".join(f"{v.query}: {v.decision} ({v.detail})" for v in verdicts)
    for v in verdicts:
        if v.decision != "correct":
            return ToolVerdict("sympy", query, output, v.decision, v.error_kind, v.detail)
    return ToolVerdict("sympy", query, output, "correct", None, "every side is equal")


def _written_query(writer: Completer, prompt: str) -> str | None:
    """The program in one reply of the query model, None if it holds no ``{"query": ...}``."""
    [reply] = writer.complete([Prompt(prompt, prompt, "")], 1)
    _, body = split_think(reply.texts[0])
    data = json_object(body)
    query = data.get("query") if data else _field(body, "query")
    return query.strip() if isinstance(query, str) and query.strip() else None


def _query_verdict(writer: Completer, step: StepToCheck, claimed: str | None) -> ToolVerdict:
    """``get_wa_code``'s loop (``output_utils.py`` lines 254-283): up to five tries, each
    asking the query model for a program and running it, until one writes a program that
    runs to its end (the released loop asks again while Wolfram|Alpha returns an error or no
    final answer). The last try's verdict stands."""
    prompt = query_prompt(step.global_objective, step.conditions, step.objective)
    verdict = ToolVerdict("python", "", "", "error", INVALID, "the query model wrote no query")
    for _ in range(QUERY_ATTEMPTS):
        code = _written_query(writer, prompt)
        if code is None:
            continue
        verdict = run_code(code, expected=claimed)
        if verdict.error_kind not in RUN_FAILURES:
            break
    if claimed is None and verdict.decision == "correct":
        detail = "the code ran; the step's boxed value is not plain math to compare"
        return ToolVerdict("python", verdict.query, verdict.output, "error", UNDECIDED, detail)
    return verdict


def tool_verdict(step: StepToCheck, writer: Completer | None) -> ToolVerdict:
    """The local tool's verdict on one step (the module docstring gives the order)."""
    sides = boxed_sides(step.action)
    if sides is not None and len(sides) >= 2:
        return _chain_verdict(sides)
    arithmetic = check_arithmetic(step.action)
    if arithmetic.decision != "error":
        return arithmetic
    if writer is None:
        return ToolVerdict(
            "none", "", "", "error", UNDECIDED, "no direct check applies and no query model"
        )
    return _query_verdict(writer, step, sides[-1] if sides else None)


def tool_return(verdict: ToolVerdict) -> str:
    """The verdict as the judge reads it (the released ``wa_answer``)."""
    lines = [f"tool: {verdict.tool}", f"query: {verdict.query}", f"output: {verdict.output}"]
    lines.append(
        f"decision: {verdict.decision}" + (f" ({verdict.detail})" if verdict.detail else "")
    )
    return "\n".join(lines)


# --- the judge ---------------------------------------------------------------------------------------


def read_verification(reply: str) -> tuple[str | None, str]:
    """(``"correct"``/``"wrong"``/None, reason) from a judge's reply, as ``llm_verify``,
    ``parse_verification`` and ``step_evaluate`` read it (``mcts_utils.py`` lines 166-199,
    ``mcts.py`` lines 348-352): ``True``/``true`` anywhere in the result first, then
    ``False``/``false``. The reasoning before ``</think>`` leads the reason, in
    ``<think>`` tags, where there is one."""
    think, body = split_think(reply)
    data = json_object(body)
    if data is not None:
        result, reason = str(data.get("result", "")), str(data.get("reason", ""))
    else:
        result, reason = _field(body, "result") or "", _field(body, "reason") or body
    if think:
        reason = f"<think>\n{think}\n</think>\n{reason}"
    if "True" in result or "true" in result:
        return "correct", reason
    if "False" in result or "false" in result:
        return "wrong", reason
    return None, reason


def judge_steps(
    judge: Completer, steps: Sequence[StepToCheck], verdicts: Sequence[ToolVerdict]
) -> list[ToolVerdict]:
    """An LLM judge's decision on each step, asked together, each asked again up to five
    times in all while its reply holds neither True nor False. The judgement's query is the
    verification prompt's input part (the instruction is :data:`.prompts.VERIFY_INSTRUCTION`),
    its output the judge's last reply, its detail the reason."""
    prompts = [
        verify_prompt(s.objective, s.conditions, tool_return(v), s.action)
        for s, v in zip(steps, verdicts, strict=True)
    ]
    replies: list[str] = [""] * len(steps)
    decided: list[tuple[str | None, str]] = [(None, "")] * len(steps)
    pending = list(range(len(steps)))
    for _ in range(JUDGE_ATTEMPTS):
        if not pending:
            break
        answers = judge.complete([Prompt(prompts[i], prompts[i], "") for i in pending], 1)
        for i, answer in zip(pending, answers, strict=True):
            replies[i] = answer.texts[0]
            decided[i] = read_verification(replies[i])
        pending = [i for i in pending if decided[i][0] is None]
    out = []
    for step, verdict, reply, (decision, reason) in zip(
        steps, verdicts, replies, decided, strict=True
    ):
        query = VERIFY_PROMPT.format(
            step_objective=step.objective,
            conditions=json.dumps(list(step.conditions), ensure_ascii=False),
            tool_return=tool_return(verdict),
            llm_answer=step.action,
        )
        if decision is None:
            out.append(ToolVerdict("judge", query, reply, "error", UNDECIDED, reason))
        else:
            out.append(ToolVerdict("judge", query, reply, decision, None, reason))
    return out


@dataclass
class Checker:
    """Tool, then judge, for a batch of steps. ``judge`` None is ``judge=tool``; ``writer``
    writes tool queries (None: only the direct checks)."""

    writer: Completer | None
    judge: Completer | None = None

    def check(self, steps: Sequence[StepToCheck]) -> list[tuple[ToolVerdict, ToolVerdict | None]]:
        verdicts = [tool_verdict(step, self.writer) for step in steps]
        if self.judge is None or not steps:
            return [(v, None) for v in verdicts]
        judgements = judge_steps(self.judge, steps, verdicts)
        return list(zip(verdicts, judgements, strict=True))
