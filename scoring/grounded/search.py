"""The grounded tree search of one problem: generate steps, check them, fuse, back up.

Reference: ``JerryPlain/GroundedPRMCode``, ``pipeline/MCTS/mcts.py`` (``MCTS.search`` lines
167-229, ``expand`` 68-95, ``simulate`` 98-131, ``generate_next_actions`` 282-288,
``update_state`` 291-312, ``is_terminal`` 315-332), ``pipeline/MCTS/mcts_node.py`` and
``mcts_utils.py`` (the node and its ``State``) and ``pipeline/data_generation.py`` lines
33-58 (the budget by level, ``exploration_weight=1.8``, three children).

A round, as ``search`` runs it: select a node (:func:`~scoring.grounded.selection.select`);
if its step is terminal, collect its path; else ask the generator for three next steps
(``{"step objective", "action"}`` JSON, the action's conclusion in ``\\boxed{}``), check each,
add them as children keyed by objective and pick the child to simulate
(:func:`~scoring.grounded.tree.expand`), then roll out from it one step at a time up to the
simulation depth or a terminal step, each step checked, and fuse the verdicts with the
graded outcome (:func:`~scoring.grounded.fusion.record_rollout`). The search stops at three
right and three wrong complete paths, or when its rounds (8 with depth 5 up to level 3, 12
with depth 9 above) are spent. A step is terminal when it says ``<end>``, answers right or
repeats its parent step's answer.

The node's ``State`` (``mcts_utils.py`` lines 25-59) is not stored: it is the path. The
global objective and the problem's conditions are the root's (given with the problem, or
extracted by the generator as ``root_generation.py`` does); each step on the path adds its
result to the conditions and itself to ``previous_steps``, as ``update_state`` means to
(its call ``update_conditions(state, step_ans)`` passes the state where the list is expected).

Where this differs from the released code, and why:

* **Every node is checked**, expanded or simulated. The released code checks only rollout
  steps (``step_evaluate`` from ``simulate``, line 118); expanded nodes keep an empty
  reflection, so its consistency filter (``construct.py`` lines 69-72) drops every path
  that holds one, which is every path.
* **Selection** is UCT by ``getBestChild`` (lines 262-279) with ``c = 1.8``, its sign flipped
  once three right paths are held, by default; the released ``select`` (lines 54-65) never
  calls it and returns a random child of the root on every round: ``selection="released"``
  reproduces that.
* A **fully expanded** node is not asked for new children (the released ``expand`` asks and
  throws them away), and a duplicate objective keeps the child already there
  (:mod:`~scoring.grounded.tree` says why).
* **Randomness** is drawn per round from ``Random(f"{seed}:{round}")``, not one global
  stream, so the search state is the tree alone: a search saved after any round and resumed
  (:meth:`SearchState.to_dict`, :meth:`SearchState.from_dict`) makes the same choices as one
  that ran through. Model sampling is the completer's (its own seed, where it takes one).
* **Grading** of outcomes and terminal steps uses :mod:`scoring.grading` (math-verify) where
  the released ``is_math_correct`` is used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from scoring.grading import grade
from scoring.grounded.checking import Checker, StepToCheck, json_object, parse_step, step_result
from scoring.grounded.fusion import record_rollout, record_terminal, search_budget, search_done
from scoring.grounded.prompts import extract_prompt, step_prompt
from scoring.grounded.selection import EXPLORATION, SELECTIONS, Selection, select
from scoring.grounded.tree import (
    CHILDREN_PER_EXPANSION,
    Step,
    Tree,
    expand,
    is_terminal,
    new_tree,
    path_to,
    tree_from_dict,
    tree_to_dict,
)
from scoring.montecarlo import Completer, Prompt

FORMAT = "stepwise.grounded-search/v1"


@dataclass(frozen=True)
class Problem:
    """A problem to search: its text, gold answer (bare, or a solution with a ``\\boxed{}``),
    MATH level (None if unknown), and the root state's global objective and conditions
    (empty until given or extracted)."""

    id: str
    problem: str
    gold: str
    level: int | None = None
    global_objective: str = ""
    conditions: tuple[str, ...] = ()


def problem_from_record(record: dict[str, Any], index: int) -> Problem:
    """A :class:`Problem` from a JSON record: ``problem`` (or ``question``), ``answer`` or
    ``solution`` (or ``gold``), optional ``id``, ``level`` (``3`` or ``"Level 3"``),
    ``global_objective`` and ``conditions`` (a list, or one string)."""
    text = record.get("problem", record.get("question"))
    gold = record.get("answer", record.get("solution", record.get("gold")))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"record {index}: needs a 'problem' text")
    if gold is None or not str(gold).strip():
        raise ValueError(f"record {index}: needs an 'answer' or a 'solution'")
    level = record.get("level")
    if isinstance(level, str):
        digits = re.findall(r"\d+", level)
        level = int(digits[-1]) if digits else None
    elif level is not None and not isinstance(level, int):
        raise ValueError(f"record {index}: level {level!r} is not a number")
    conditions = record.get("conditions", ())
    if isinstance(conditions, str):
        conditions = [conditions]
    return Problem(
        id=str(record.get("id", index)),
        problem=text,
        gold=str(gold),
        level=level,
        global_objective=str(record.get("global_objective", "")),
        conditions=tuple(str(c) for c in conditions),
    )


@dataclass(frozen=True)
class SearchState:
    """Everything a search needs to go on: the problem, its tree, the seed, the selection
    and the budget. It is saved after every round and a search resumes from it."""

    problem: Problem
    tree: Tree
    seed: int = 0
    selection: Selection = "uct"
    max_rounds: int = 8
    depth: int = 5
    exploration: float = EXPLORATION

    @property
    def done(self) -> bool:
        return search_done(self.tree, self.max_rounds)

    def to_dict(self) -> dict[str, Any]:
        p = self.problem
        return {
            "format": FORMAT,
            "id": p.id,
            "level": p.level,
            "global_objective": p.global_objective,
            "conditions": list(p.conditions),
            "seed": self.seed,
            "selection": self.selection,
            "max_rounds": self.max_rounds,
            "depth": self.depth,
            "exploration": self.exploration,
            "done": self.done,
            "tree": tree_to_dict(self.tree),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchState:
        """Read :meth:`to_dict`'s output back; ``ValueError`` if it is not a search state."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} search state: format {data.get('format')!r}")
        if data.get("selection") not in SELECTIONS:
            raise ValueError(f"unknown selection {data.get('selection')!r}")
        tree = tree_from_dict(data["tree"])
        try:
            problem = Problem(
                id=str(data["id"]),
                problem=tree.problem,
                gold=tree.gold,
                level=data["level"],
                global_objective=str(data["global_objective"]),
                conditions=tuple(str(c) for c in data["conditions"]),
            )
            return cls(
                problem=problem,
                tree=tree,
                seed=int(data["seed"]),
                selection=data["selection"],
                max_rounds=int(data["max_rounds"]),
                depth=int(data["depth"]),
                exploration=float(data["exploration"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a well-formed search state: {error!r}") from error


def new_search(
    problem: Problem, seed: int = 0, selection: Selection = "uct", exploration: float = EXPLORATION
) -> SearchState:
    """A search holding only the root, with the budget of the problem's level."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
    max_rounds, depth = search_budget(problem.level)
    return SearchState(
        problem=problem,
        tree=new_tree(problem.problem, problem.gold),
        seed=seed,
        selection=selection,
        max_rounds=max_rounds,
        depth=depth,
        exploration=exploration,
    )


def extract_root(problem: Problem, generator: Completer) -> Problem:
    """The root state's global objective and conditions, asked of the generator where the
    problem does not give them (``root_generation.py`` lines 48-65; a reply with no
    objective leaves the problem text as the objective and no conditions)."""
    if problem.global_objective:
        return problem
    text = extract_prompt(problem.problem)
    [reply] = generator.complete([Prompt(text, text, "")], 1)
    data = json_object(reply.texts[0]) or {}
    objective = data.get("global_objective")
    conditions = data.get("conditions", [])
    if isinstance(conditions, str):  # "condition 1: ..., condition 2: ..." (parse_conditions)
        conditions = [c for c in re.split(r",?\s*condition\s*\d+\s*:", conditions) if c.strip()]
    if not isinstance(objective, str) or not objective.strip():
        return replace(problem, global_objective=problem.problem)
    return replace(
        problem,
        global_objective=objective.strip(),
        conditions=tuple(str(c).strip() for c in conditions if str(c).strip()),
    )


class Search:
    """Runs rounds of one problem's search with a step generator and a :class:`Checker`."""

    def __init__(self, generator: Completer, checker: Checker) -> None:
        self.generator = generator
        self.checker = checker

    def run(
        self,
        state: SearchState,
        on_round: Callable[[SearchState], None] | None = None,
        stop_after: int | None = None,
    ) -> SearchState:
        """Rounds until the search is done; ``on_round`` sees the state after each (to save
        it); ``stop_after`` ends after that many rounds of this call (an interruption)."""
        rounds = 0
        while not state.done and (stop_after is None or rounds < stop_after):
            state = self.round(state)
            rounds += 1
            if on_round is not None:
                on_round(state)
        return state

    def round(self, state: SearchState) -> SearchState:
        """One round of ``MCTS.search`` (``mcts.py`` lines 189-228)."""
        tree = state.tree
        rng = random.Random(f"{state.seed}:{tree.rounds}")
        node_id = select(tree, rng, state.selection, state.exploration)
        node = tree.node(node_id)
        if node.terminal:
            return replace(state, tree=record_terminal(tree, node_id, self._right(tree, node_id)))
        fresh: list[Step] = []
        if not node.fully_expanded:
            fresh = self._steps(state, self._prefix(tree, node_id), CHILDREN_PER_EXPANSION)
        tree, sim_id = expand(tree, node_id, fresh)
        rollout: list[Step] = []
        prefix = self._prefix(tree, sim_id)
        if not tree.node(sim_id).terminal:
            for _ in range(state.depth):
                [step] = self._steps(replace(state, tree=tree), prefix, 1)
                rollout.append(step)
                prefix = [*prefix, step]
                if step.terminal:
                    break
        last = rollout[-1] if rollout else tree.node(sim_id).step
        correct = last is not None and grade(last.action, tree.gold)
        return replace(state, tree=record_rollout(tree, sim_id, rollout, correct))

    @staticmethod
    def _prefix(tree: Tree, node_id: int) -> list[Step]:
        return [tree.node(i).step for i in path_to(tree, node_id)[1:]]

    @staticmethod
    def _right(tree: Tree, node_id: int) -> bool:
        step = tree.node(node_id).step
        return step is not None and grade(step.action, tree.gold)

    def _steps(self, state: SearchState, prefix: Sequence[Step], n: int) -> list[Step]:
        """``n`` next steps after ``prefix``, each checked and marked terminal or not."""
        problem = state.problem
        conditions = (*problem.conditions, *(step_result(s.action) for s in prefix))
        previous = [{"step_objective": s.objective, "action": s.action} for s in prefix]
        goal = problem.global_objective or problem.problem
        text = step_prompt(goal, conditions, previous)
        [reply] = self.generator.complete([Prompt(text, text, "")], n)
        parsed = [parse_step(t) for t in reply.texts]
        to_check = [
            StepToCheck(objective, action, goal, conditions) for objective, action in parsed
        ]
        parent_action = prefix[-1].action if prefix else None
        return [
            Step(
                objective=objective,
                action=action,
                verdict=verdict,
                judgement=judgement,
                terminal=is_terminal(action, parent_action, state.tree.gold),
            )
            for (objective, action), (verdict, judgement) in zip(
                parsed, self.checker.check(to_check), strict=True
            )
        ]
