"""The prompts of the grounded search: root extraction, next step, tool query, verification,
and the generative training instruction.

They follow the structure of the released prompts (``JerryPlain/GroundedPRMCode``,
``pipeline/prompts/instructions.py``: ``extract_instruction`` lines 1-38,
``generate_step_instruction`` lines 41-120, ``code_instruction`` lines 123-160,
``verify_instruction`` lines 188-211 with ``verify_prompt`` lines 214-221;
``data_process/training_instruction.py`` lines 1-14), worded for the local tools that stand in
for Wolfram|Alpha here: SymPy and a sandboxed Python run (:mod:`scoring.tools`). The tool
query is a Python program instead of a Wolfram Language query; the verification keeps the
reference's three checks (logic, relevance of the tool's answer, comparison with an absolute
tolerance of 0.1 for numbers and algebraic equivalence for expressions) and its JSON answer
``{"reason", "result"}``.

The completers send one user turn (:mod:`scoring.completers`), so each instruction, which the
released code sends as a system message, leads the prompt. Lists are written as JSON, where
the released prompts ``str.format`` Python lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

EXTRACT_INSTRUCTION = """You will be given one mathematics problem. Extract:
1. the known conditions stated in the problem, one fact or relationship each, and
2. the single global objective: what the problem asks to find.

Do not reason, explain or add anything that is not in the problem; mathematical expressions \
taken from the problem are fine. Answer with JSON only:
{"conditions": ["condition 1", "condition 2"], "global_objective": "the final objective"}"""

EXTRACT_PROMPT = "Extract the conditions and the global objective.\nQuestion: {problem}"

STEP_INSTRUCTION = """Propose the next reasoning step for solving a mathematics problem, from \
its conditions, its global objective and the previous steps. Give two parts:

1. "step objective": the immediate local goal of this one step, naming the conditions, \
formulas and methods it uses and the intermediate conclusion it derives.
2. "action": the reasoning or computation that reaches that objective from those conditions \
only, and nothing beyond it. Write the step's conclusion inside \\boxed{} as \
"parameter = result" (never a bare value without what it stands for).
If and only if the action reaches the final solution of the whole problem, or repeats the \
result of an earlier step, end the action with <end>.

Answer with JSON only:
{"step objective": "...", "action": "..."}"""

STEP_PROMPT = """Generate the next step objective and its action.
Input:
{{
  "global_objective": {global_objective},
  "conditions": {conditions},
  "previous_steps": {previous_steps}
}}"""

QUERY_INSTRUCTION = """You write checking code for one step of a math solution. Do not solve \
the whole problem: write a short Python program (SymPy may be imported) that computes the \
result of the current target from the conditions and prints that result alone on its last \
line, as a plain expression (2*x + 1, sqrt(2)/2, 7). Use no files and no network.

Answer with JSON only:
{"query": "the Python program"}"""

QUERY_PROMPT = """Write the checking code for the current target from the known conditions.
Input:
{{
  "global_objective": {global_objective},
  "conditions": {conditions},
  "current_target": {step_objective}
}}"""

VERIFY_INSTRUCTION = """You verify one step of mathematical reasoning. Analyse it in this order \
and answer in JSON:

1. Logical check: does the step contradict the known conditions or stray from its objective \
(irrelevant variables, wrong formulas)?
2. Tool relevance: is the tool's query about this step's objective, and does its answer hold \
usable evidence?
3. Result comparison:
   - the tool returns a number: the step's result must be within an absolute error of 0.1;
   - the tool returns an expression: the step's result must be algebraically equivalent \
(an unsimplified form is fine; substitute values to confirm);
   - the tool failed, or its answer is irrelevant: judge the step's correctness from all \
the context given.

Input elements: <objective> the step's goal, <conditions> what is known, <tool_return> the \
local tool's query, output and decision, <llm_answer> the step to verify.

Answer with JSON only:
{"reason": "First, ...[logical check], then ...[tool relevance], finally ...[comparison]", \
"result": "True" or "False"}"""

VERIFY_PROMPT = """Verify the llm answer.
Input:
<objective>: {step_objective}
<conditions>: {conditions}
<tool_return>: {tool_return}
<llm_answer>: {llm_answer}"""

TRAINING_INSTRUCTION = """Analyse and critique the steps of a math solution one by one. For \
each step answer in this format:

1. Check the expression the step writes with a tool: <verify>\\n The expression I needed to \
verify is: [expression], the result is: [output] \\n</verify>.
2. Judge the step's logic yourself, or its calculation against the tool's result where the \
step has a definite result: <judge>\\n [reason] \\n</judge>.
   - The tool's own correctness does not decide the label.
   - The tool is a reference for definite results; a step with no definite result is correct \
when its reasoning is valid, even if incomplete.
3. Give the conclusion and the label, + for correct and - for incorrect, in \
<output>...\\boxed{}</output>: + where the judgement found the step and the tool in agreement, \
or the step right without a relevant tool result; - otherwise.

The math problem and its steps follow."""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def step_prompt(global_objective: str, conditions: Sequence[str], previous: Sequence[dict]) -> str:
    """The next-step request (``mcts.py`` ``generate_next_actions``, lines 282-288)."""
    body = STEP_PROMPT.format(
        global_objective=_json(global_objective),
        conditions=_json(list(conditions)),
        previous_steps=_json(list(previous)),
    )
    return f"{STEP_INSTRUCTION}\n\n{body}"


def query_prompt(global_objective: str, conditions: Sequence[str], step_objective: str) -> str:
    """The tool query request (``output_utils.py`` ``get_wa_code``, lines 254-283)."""
    body = QUERY_PROMPT.format(
        global_objective=_json(global_objective),
        conditions=_json(list(conditions)),
        step_objective=_json(step_objective),
    )
    return f"{QUERY_INSTRUCTION}\n\n{body}"


def verify_prompt(
    step_objective: str, conditions: Sequence[str], tool_return: str, llm_answer: str
) -> str:
    """The verification request (``mcts_utils.py`` ``llm_verify``, lines 190-199)."""
    body = VERIFY_PROMPT.format(
        step_objective=step_objective,
        conditions=_json(list(conditions)),
        tool_return=tool_return,
        llm_answer=llm_answer,
    )
    return f"{VERIFY_INSTRUCTION}\n\n{body}"


def extract_prompt(problem: str) -> str:
    """The root extraction request (``root_generation.py`` lines 51-54)."""
    return f"{EXTRACT_INSTRUCTION}\n\n{EXTRACT_PROMPT.format(problem=problem)}"
