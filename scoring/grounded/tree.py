"""The search tree of one problem, as the released GroundedPRM code holds it, and its JSON.

Reference: ``JerryPlain/GroundedPRMCode``, ``pipeline/MCTS/mcts_node.py`` lines 9-37 (the node:
``state``, ``parent``, ``visits``, ``value``, ``children`` keyed by the step objective,
``isFullyExpanded``, ``reflection``, ``is_simulated``, ``is_virtual``, ``simulation_branch``)
and ``pipeline/MCTS/mcts.py`` lines 68-95 (``expand``), 315-332 (``is_terminal``) and 399-429
(``build_tree_dict``, the tree export).

Everything here is a frozen dataclass; an update returns a new :class:`Tree`. Node ids are
the nodes' positions in ``Tree.nodes`` (0 is the root, the problem itself), so the same
sequence of updates gives the same ids: a search resumed from an exported tree adds nodes
exactly where the first worker would have.

Where this departs from the released node, and why:

* Every node, expanded or simulated, may carry a tool verdict (``Step.verdict``, with its
  transcript) and a judge's reading of it (``Step.judgement``). The released code judges
  only simulated nodes (``step_evaluate``, ``mcts.py`` line 118); an expanded node keeps an
  empty ``reflection``, as does the root, so its consistency filter (``construct.py`` lines
  69-72) drops every path through one: every path it extracts.
* A node keeps every rollout simulated from it (``Node.rollouts``). The released node holds
  one ``simulation_branch`` that a second simulation of the same node overwrites
  (``mcts.py`` line 123), so its exported tree loses the earlier rollout's steps.
* A duplicate step objective keeps the child already there. The released
  ``append_children`` (``mcts_node.py`` lines 34-37) replaces it with the newcomer, which,
  when a not fully expanded node is expanded again, throws away a simulated child with its
  value, visits and subtree while its ancestors keep the value it backed up. Within one
  expansion both are fresh (value 0), so only which duplicate's text is kept differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from scoring.grading import answers_match, grade, last_boxed
from scoring.tools.verdict import ToolVerdict

FORMAT = "stepwise.grounded-tree/v1"
COLLECT_POSITIVE = "collect_positive"  # mcts.py line 41
COLLECT_NEGATIVE = "collect_negative"  # mcts.py line 227
PHASES = (COLLECT_POSITIVE, COLLECT_NEGATIVE)
CHILDREN_PER_EXPANSION = 3  # data_generation.py line 42 (child_nums) and mcts.py line 93

Label = Literal["positive", "negative"]


@dataclass(frozen=True)
class Step:
    """One generated step and what checking it found.

    ``objective`` and ``action`` are the step's ``{"step objective", "action"}`` JSON (the
    action ends in ``\\boxed{...}``); ``verdict`` is the tool's (query, output, decision);
    ``judgement`` is an LLM judge's reading of it as a :class:`ToolVerdict` (its query the
    verification prompt, its output the judge's reply), None where the tool decides alone
    (``judge=tool``). ``terminal`` is :func:`is_terminal`'s answer, decided by the search.
    """

    objective: str
    action: str
    verdict: ToolVerdict | None = None
    judgement: ToolVerdict | None = None
    terminal: bool = False

    @property
    def decision(self) -> str | None:
        """The decision that labels the step: the judge's where there is one, else the
        tool's; None where neither looked at it."""
        checked = self.judgement or self.verdict
        return checked.decision if checked is not None else None

    @property
    def content(self) -> str:
        """The step as one text, as ``extract_path.py`` line 125 joins it."""
        return f"{self.objective}\n{self.action}"


@dataclass(frozen=True)
class Rollout:
    """One simulation from a node: the virtual nodes it made, in order (empty when the node
    itself was terminal), the outcome (+1 right final answer, -1 wrong:
    ``evaluate_final_state``, ``mcts.py`` lines 362-371) and the rollout value ``final_V``
    it added to the node (:func:`scoring.grounded.fusion.rollout_value`)."""

    nodes: tuple[int, ...]
    outcome: float
    value: float


@dataclass(frozen=True)
class Sample:
    """A complete path the search collected (``mcts.py`` lines 192-224): node ids from the
    root, its label, and whether it ends on a tree node (``real``) or a rollout
    (``simulation``)."""

    path: tuple[int, ...]
    label: Label
    branch: Literal["real", "simulation"]


@dataclass(frozen=True)
class Node:
    """A node of the search tree (``mcts_node.py`` lines 10-29).

    ``step`` is None at the root (the problem). ``children`` are ids in the order they were
    added, one per step objective; a rollout's ``virtual`` nodes are nobody's children: each
    one's parent is the rollout step before it (the first one's is the simulated node), as
    in ``mcts.py`` line 112, and the node that was simulated lists them in ``rollouts``.
    """

    id: int
    parent: int | None
    depth: int
    step: Step | None
    virtual: bool = False
    value: float = 0.0
    visits: int = 0
    children: tuple[int, ...] = ()
    fully_expanded: bool = False
    simulated: bool = False
    rollouts: tuple[Rollout, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.step is not None and self.step.terminal


@dataclass(frozen=True)
class Tree:
    """One problem's search: the problem, its gold answer (bare, or a solution with a
    ``\\boxed{}``), every node, the phase of ``getBestChild``'s sign, the samples and the
    rounds done (``current_round``, ``mcts.py`` lines 188, 208 and 228)."""

    problem: str
    gold: str
    nodes: tuple[Node, ...]
    phase: str = COLLECT_POSITIVE
    samples: tuple[Sample, ...] = ()
    rounds: int = 0

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def count(self, label: Label) -> int:
        return sum(1 for s in self.samples if s.label == label)


def new_tree(problem: str, gold: str) -> Tree:
    """A tree holding only its root (``mcts.py`` lines 169-185)."""
    return Tree(problem=problem, gold=gold, nodes=(Node(id=0, parent=None, depth=0, step=None),))


def with_nodes(tree: Tree, changed: Sequence[Node] = (), added: Sequence[Node] = ()) -> Tree:
    """``tree`` with ``changed`` nodes replaced (by id) and ``added`` appended."""
    nodes = list(tree.nodes)
    for node in changed:
        nodes[node.id] = node
    for node in added:
        if node.id != len(nodes):
            raise ValueError(f"node {node.id} added out of order (next id {len(nodes)})")
        nodes.append(node)
    return replace(tree, nodes=tuple(nodes))


def ancestors(tree: Tree, node_id: int) -> list[int]:
    """Ids from the node's parent up to the root (the order ``backpropagate`` walks)."""
    out = []
    parent = tree.node(node_id).parent
    while parent is not None:
        out.append(parent)
        parent = tree.node(parent).parent
    return out


def path_to(tree: Tree, node_id: int) -> list[int]:
    """Ids from the root down to ``node_id``."""
    return [*reversed(ancestors(tree, node_id)), node_id]


def step_value(step: Step) -> float:
    """A checked step's value as ``step_evaluate`` sets it (``mcts.py`` lines 341-359): 1.0
    if judged right, -1.0 if wrong, 0.0 when no decision came (its retries ran out)."""
    return {"correct": 1.0, "wrong": -1.0}.get(step.decision or "", 0.0)


def is_terminal(action: str, parent_action: str | None, gold: str) -> bool:
    """Whether a step ends its path (``mcts.py`` lines 315-332): it says ``<end>``, its
    answer is right, or it repeats its parent step's answer. ``parent_action`` is None for
    a child of the root. Answers are graded with :mod:`scoring.grading`."""
    action = action.strip()
    if "<end>" in action:
        return True
    if grade(action, gold):
        return True
    if parent_action is None:
        return False
    previous, answer = last_boxed(parent_action.strip()), last_boxed(action)
    return previous is not None and answers_match(previous, answer)


def expand(
    tree: Tree, node_id: int, steps: Sequence[Step], child_nums: int = CHILDREN_PER_EXPANSION
) -> tuple[Tree, int]:
    """Add ``steps`` as children of a node not yet fully expanded, then choose the child to
    simulate (``mcts.py`` lines 68-95): the highest value among the children not simulated
    yet, the first one on a tie; it is marked simulated, and the node is fully expanded
    once it has ``child_nums`` children. With no child left to simulate the node itself is
    returned, unchanged, to be simulated again.

    A step whose objective a child already has is dropped (the module docstring says why
    the released code's replacement is not kept). Returns the tree and the id to simulate.
    """
    node = tree.node(node_id)
    if node.virtual:
        raise ValueError(f"node {node_id} is a rollout step, not a tree node")
    added: list[Node] = []
    if not node.fully_expanded:
        objectives = {tree.node(c).step.objective for c in node.children}
        for step in steps:
            if step.objective in objectives:
                continue
            objectives.add(step.objective)
            new_id = len(tree.nodes) + len(added)
            added.append(Node(id=new_id, parent=node_id, depth=node.depth + 1, step=step))
        node = replace(node, children=node.children + tuple(n.id for n in added))
    tree = with_nodes(tree, [node], added)
    candidates = [tree.node(c) for c in node.children if not tree.node(c).simulated]
    if not candidates:
        return tree, node_id
    chosen = candidates[0]
    for child in candidates[1:]:
        if child.value > chosen.value:  # strictly greater: the first maximum wins
            chosen = child
    node = replace(node, fully_expanded=len(node.children) >= child_nums)
    return with_nodes(tree, [node, replace(chosen, simulated=True)]), chosen.id


# --- JSON ---------------------------------------------------------------------------------


def _verdict_from(data: dict[str, Any] | None) -> ToolVerdict | None:
    return None if data is None else ToolVerdict(**data)


def tree_to_dict(tree: Tree) -> dict[str, Any]:
    """The whole tree as plain JSON data: the problem, gold answer, phase, samples and every
    node with its parent, step, tool verdict and judgement (transcripts included), value,
    visits, children and rollouts. :func:`tree_from_dict` reads it back equal."""
    return {
        "format": FORMAT,
        "problem": tree.problem,
        "gold": tree.gold,
        "phase": tree.phase,
        "rounds": tree.rounds,
        "samples": [
            {"path": list(s.path), "label": s.label, "branch": s.branch} for s in tree.samples
        ],
        "nodes": [_node_to_dict(n) for n in tree.nodes],
    }


def _node_to_dict(node: Node) -> dict[str, Any]:
    step = node.step
    return {
        "id": node.id,
        "parent": node.parent,
        "depth": node.depth,
        "step": None if step is None else {"step objective": step.objective, "action": step.action},
        "verdict": None if step is None or step.verdict is None else step.verdict.to_dict(),
        "judgement": None if step is None or step.judgement is None else step.judgement.to_dict(),
        "terminal": node.terminal,
        "virtual": node.virtual,
        "value": node.value,
        "visits": node.visits,
        "children": list(node.children),
        "fully_expanded": node.fully_expanded,
        "simulated": node.simulated,
        "rollouts": [
            {"nodes": list(r.nodes), "outcome": r.outcome, "value": r.value} for r in node.rollouts
        ],
    }


def tree_from_dict(data: dict[str, Any]) -> Tree:
    """Read :func:`tree_to_dict`'s output back; a ``ValueError`` if it is not a consistent
    tree (a missing field, ids out of order, a parent, child, rollout or sample that does not
    exist or does not agree)."""
    try:
        return _checked(_tree_from_dict(data))
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a well-formed tree: {error!r}") from error


def _tree_from_dict(data: dict[str, Any]) -> Tree:
    if data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} tree: format {data.get('format')!r}")
    if data.get("phase") not in PHASES:
        raise ValueError(f"unknown phase {data.get('phase')!r}")
    return Tree(
        problem=str(data["problem"]),
        gold=str(data["gold"]),
        nodes=tuple(_node_from_dict(i, d) for i, d in enumerate(data["nodes"])),
        phase=data["phase"],
        rounds=int(data["rounds"]),
        samples=tuple(
            Sample(path=tuple(s["path"]), label=s["label"], branch=s["branch"])
            for s in data["samples"]
        ),
    )


def _checked(tree: Tree) -> Tree:
    nodes = tree.nodes
    if not nodes or nodes[0].parent is not None or nodes[0].step is not None:
        raise ValueError("node 0 must be the root: no parent, no step")
    for node in nodes[1:]:
        if node.parent is None or not 0 <= node.parent < len(nodes) or node.step is None:
            raise ValueError(f"node {node.id}: needs a step and an existing parent")
        if node.depth != nodes[node.parent].depth + 1:
            raise ValueError(
                f"node {node.id}: depth {node.depth} under a parent at depth "
                f"{nodes[node.parent].depth}"
            )
    for node in nodes:
        for child in node.children:
            if not 0 <= child < len(nodes) or nodes[child].parent != node.id:
                raise ValueError(f"node {node.id}: child {child} does not name it as parent")
        for rollout in node.rollouts:
            if any(not 0 < v < len(nodes) or not nodes[v].virtual for v in rollout.nodes):
                raise ValueError(f"node {node.id}: a rollout names a node that is not virtual")
    for sample in tree.samples:
        if sample.label not in ("positive", "negative"):
            raise ValueError(f"a sample labelled {sample.label!r}")
        if sample.branch not in ("real", "simulation"):
            raise ValueError(f"a sample on a {sample.branch!r} branch")
        if not sample.path or any(not 0 <= i < len(nodes) for i in sample.path):
            raise ValueError(f"a sample's path {list(sample.path)} leaves the tree")
    return tree


def _node_from_dict(index: int, data: dict[str, Any]) -> Node:
    if data["id"] != index:
        raise ValueError(f"node at position {index} has id {data['id']}")
    raw = data["step"]
    step = None
    if raw is not None:
        step = Step(
            objective=raw["step objective"],
            action=raw["action"],
            verdict=_verdict_from(data["verdict"]),
            judgement=_verdict_from(data["judgement"]),
            terminal=bool(data["terminal"]),
        )
    return Node(
        id=index,
        parent=data["parent"],
        depth=data["depth"],
        step=step,
        virtual=bool(data["virtual"]),
        value=float(data["value"]),
        visits=int(data["visits"]),
        children=tuple(data["children"]),
        fully_expanded=bool(data["fully_expanded"]),
        simulated=bool(data["simulated"]),
        rollouts=tuple(
            Rollout(nodes=tuple(r["nodes"]), outcome=float(r["outcome"]), value=float(r["value"]))
            for r in data["rollouts"]
        ),
    )
