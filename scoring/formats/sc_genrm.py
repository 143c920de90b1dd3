"""The data layout of "When To Solve, When To Verify" (``nishadsinghi/sc-genrm-scaling`` at
1d310ee), read as it is into :class:`scoring.curves.Pool` s.

Two directories (the reference's README, "Output Format"):

- samples: ``{i}.yaml`` per problem, ``{prompt, question, samples: [str], gt_answer}``;
  ``gt_answer`` is boxed text (MATH) or a number (AIME, AMC), as ``generate_solutions.py``
  (``save_samples``, lines 54-74) writes it.
- verifications: ``problem_{i}/solution_{j}.yaml``, ``{prompt, verifications: [{p(yes),
  p(no), verification}]}`` (``generate_verifications.py:150-165``), -1 for a probability the
  server did not give.

Each problem's pool holds its samples in file order; sample j is verified when
``problem_i/solution_j.yaml`` exists (j = 0..K-1, so the verified ones come first). As
``count_verifications`` (``eval_utils.py:60-90``) counts them, the problems are the
``problem_*`` folders when a verification directory is given, else the samples' files.
The reference takes the solution and verification counts from problem 0 and reads that
many everywhere; here every problem keeps what it has, and ``max_*`` cut them to the
counts the reference's configs give (``max_num_solutions_without_verifs``...).

Answers are the reference's ``get_predicted_solutions`` (eval_utils:117-148): lm-eval's
Minerva ``normalize_final_answer(get_unnormalized_answer(...))`` (``answer_style="minerva"``,
its ``model="llama"``), its Llama-70B variant (``"llama70b"``, eval_utils:446-459), or the
last boxed text (``"hendrycks"``, eval_utils:22-38); ``"[invalidanswer]"`` and ``""``
(anything ``is_invalid_answer`` flags, eval_utils:346-352) become None. The reference
answer is ``get_gt_solution`` (eval_utils:93-114).

Correctness is ``get_solution_correctness`` (eval_utils:303-308): the strings are equal, or
lm-eval's Minerva ``is_equiv`` (SymPy) or Hendrycks ``is_equiv`` (string clean-up) holds.
The two equivalences are replaced by :func:`scoring.grading.answers_match` (math-verify under
a timeout, after its own normalised exact match): lm-eval is not a dependency, and
the project grades with one function. Each distinct answer of a problem is graded once.

The text verdict is ``extract_final_verification`` (eval_utils:190-227) with its fallback
``check_solution_status`` (eval_utils:153-187). The rule that combines p(yes), p(no) and the
text verdict is :func:`scoring.curves.verdict_value`, applied when the curves are computed.

The data holds no token counts: lambda is given for it (the reference's ``lamb``: 1 for
GenRM-Base, 2 for GenRM-FT, ``configs/*.yaml``).

Files are read one at a time, each refused past a size cap before it is parsed (YAML is
parsed whole per file, by the safe loader: never PyYAML's full loader, which the reference's
``load_yaml`` uses and which builds arbitrary objects). Errors name the file, the line
for a YAML syntax error, and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scoring.curves import Pool, Sample, Verification
from scoring.formats.base import ImportFormatError

MiB = 1024 * 1024
# A samples file of 16,384 MATH solutions (the reference's largest, llama8b_math128.yaml)
# is about 40 MiB; a QwQ verification file of 64 verifications of up to 32k tokens, 10 MiB.
MAX_SAMPLES_FILE_BYTES = 256 * MiB
MAX_VERIFICATIONS_FILE_BYTES = 64 * MiB
ANSWER_STYLES = ("minerva", "llama70b", "hendrycks")
INVALID_ANSWER = "[invalidanswer]"

_SAMPLES_FILE = re.compile(r"(\d+)\.yaml")
_PROBLEM_DIR = re.compile(r"problem_(\d+)")
_SOLUTION_FILE = re.compile(r"solution_(\d+)\.yaml")

# ----------------------------------------------------------------- lm-eval's Minerva answers
# Re-implemented from lm-evaluation-harness ``lm_eval/tasks/minerva_math/utils.py``
# (``get_unnormalized_answer``, ``SUBSTITUTIONS``, ``REMOVED_EXPRESSIONS``,
# ``normalize_final_answer``, ``last_boxed_only_string``, ``remove_boxed``), which itself
# follows appendix D of Lewkowycz et al. (2022). The tables are data and must be the same,
# in the same order: each replacement runs on the previous one's output.

_REPLACED = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
_DELETED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
    "\\ldots",
    "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds",
    "meters", "meals", "edges", "students", "childrentickets", "multiples",
    "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}",
    "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots",
)  # fmt: skip
# (pattern, replacement) in lm-eval's order; "." never crosses a line, as there.
_REWRITES = (
    (re.compile(r".*?\$(.*?)\$.*"), r"$\1$"),  # the first $...$ span
    (re.compile(r"\\text\{(.*?)\}"), r"\1"),
    (re.compile(r"\\textbf\{(.*?)\}"), r"\1"),
    (re.compile(r"\\overline\{(.*?)\}"), r"\1"),
    (re.compile(r"\\boxed\{(.*)\}"), r"\1"),
    (re.compile(r"frac([^{])(.)"), r"frac{\1}{\2}"),  # \fracab -> \frac{a}{b}
    (re.compile(r"sqrt([^{])"), r"sqrt{\1}"),  # \sqrta -> \sqrt{a}
)
_FINAL_ANSWER = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")
_LLAMA70B_STRIPPED = "".join(sorted(set(". I hope it is correct")))
_LLAMA70B_ANSWER = re.compile(r"(?<=The final answer is):?\s(.*)")


def minerva_answer(text: str) -> str:
    """lm-eval Minerva's ``get_unnormalized_answer``: what follows "Final Answer: The final
    answer is" up to ". I hope it is correct." (appended once, so a solution that stops
    early still matches), stripped; ``"[invalidanswer]"`` if absent.

    >>> minerva_answer("...\\nFinal Answer: The final answer is $24$. I hope it is correct.")
    '$24$'
    """
    found = _FINAL_ANSWER.search(text + "I hope it is correct.")
    return found.group(1).strip() if found else INVALID_ANSWER


def llama70b_answer(text: str) -> str:
    """The reference's ``get_unnormalized_answer_llama70`` (eval_utils:446-459), quirk kept:
    its ``rstrip(". I hope it is correct")`` strips trailing characters of that set (an
    answer ending in ``\\pi`` loses the ``pi``), as there."""
    cut = text.split(". I hope it is correct")[0]
    found = _LLAMA70B_ANSWER.search(cut)
    if not found:
        return INVALID_ANSWER
    # a character set, as the reference's rstrip takes it
    return found.group(1).strip().rstrip(_LLAMA70B_STRIPPED)


def normalize_final_answer(answer: str) -> str:
    """lm-eval Minerva's ``normalize_final_answer``: the text after the last ``=``, units and
    filler removed, the first ``$...$`` span kept, ``\\text``/``\\textbf``/``\\overline``/
    ``\\boxed`` unwrapped, shorthand ``\\frac``/``\\sqrt`` braced, ``$`` dropped, and
    thousands separators removed from an integer.

    >>> normalize_final_answer("$x = 10,000$ dollars")
    '10000'
    >>> normalize_final_answer("\\\\boxed{\\\\fracab}")
    '\\\\frac{a}{b}'
    """
    answer = answer.rsplit("=", 1)[-1]
    for old, new in _REPLACED:
        answer = answer.replace(old, new)
    for old in _DELETED:
        answer = answer.replace(old, "")
    for pattern, replacement in _REWRITES:
        answer = pattern.sub(replacement, answer)
    answer = answer.replace("$", "")
    without_commas = answer.replace(",", "")
    return without_commas if without_commas.isdigit() else answer


def last_boxed(text: str) -> str | None:
    """lm-eval Minerva's ``last_boxed_only_string``: ``"\\boxed "`` and the text after its
    last occurrence up to a ``$``; else the last ``\\boxed{...}`` (or ``\\fbox{...}``) through
    its balanced closing brace, counted from the command's start; None if there is none or
    it is not closed."""
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def unboxed(boxed: str | None) -> str | None:
    """lm-eval Minerva's ``remove_boxed``, with None where it fails an assertion (the
    reference catches that, eval_utils:34-38, or exits, eval_utils:100-107)."""
    if boxed is None:
        return None
    if "\\boxed " in boxed:
        return boxed[len("\\boxed ") :] if boxed.startswith("\\boxed ") else None
    if boxed.startswith("\\boxed{") and boxed.endswith("}"):
        return boxed[len("\\boxed{") : -1]
    return None


def predicted_answer(solution: str, style: str = "minerva") -> str | None:
    """A sample's answer as ``get_predicted_solutions`` (eval_utils:117-148) makes it, None
    where ``is_invalid_answer`` (eval_utils:346-352) holds."""
    if style == "minerva":
        answer = normalize_final_answer(minerva_answer(solution))
    elif style == "llama70b":
        answer = normalize_final_answer(llama70b_answer(solution))
    elif style == "hendrycks":
        answer = unboxed(last_boxed(solution)) or ""
    else:
        raise ValueError(f"answer style must be one of {ANSWER_STYLES}, got {style!r}")
    return None if answer == "" or "invalidanswer" in answer else answer


def reference_answer(gt_answer: Any, where: str = "gt_answer") -> str:
    """``get_gt_solution`` (eval_utils:93-114): ``str()`` of the value; boxed text is
    unboxed and normalised, a number loses a trailing ``.0`` (AMC's floats)."""
    if isinstance(gt_answer, bool) or not isinstance(gt_answer, str | int | float):
        raise ImportFormatError(
            where, f"expected text or a number, got {type(gt_answer).__name__}", field="gt_answer"
        )
    text = str(gt_answer)
    if "boxed" not in text:
        return text.removesuffix(".0") if text.endswith(".0") else text
    inner = unboxed(last_boxed(text))
    if inner is None:
        raise ImportFormatError(
            where, f"mentions boxed but holds no closed \\boxed{{...}}: {text[:80]!r}", "gt_answer"
        )
    return normalize_final_answer(inner)


def reference_correct(answer: str, gold: str) -> bool:
    """``get_solution_correctness`` (eval_utils:303-308): equal strings, else an equivalence,
    here :func:`scoring.grading.answers_match` in place of lm-eval's two ``is_equiv``."""
    from scoring.grading import answers_match

    return answer == gold or answers_match(gold, answer)


# ----------------------------------------------------------------- the text verdict

_VERDICT_QUESTION = re.compile(
    r"(?i)Is the (?:answer|solution) correct(?:\s*\(yes/no\))?\??\**\s*(.+)$"
)
_LATEX_WRAPPED = re.compile(r"\\[a-zA-Z]+\s*{([^{}]+)}")
_LATEX_LEFTOVERS = re.compile(r"\\[a-zA-Z]+|\{|\}|\(|\)|\*\*|[\^\$\\]")


def _status_pattern(label: str, word: str) -> re.Pattern[str]:
    # "<label> : [word]" with optional colon and brackets, as check_solution_status's list
    return re.compile(label + r"\s*:?\s*[\[\(]?\s*" + word + r"\s*[\]\)]?")


_STATUS_LABELS = (r"solution\s+status", "status", "assessment")
_SAYS_INCORRECT = tuple(_status_pattern(label, "incorrect") for label in _STATUS_LABELS)
_SAYS_CORRECT = tuple(_status_pattern(label, "correct") for label in _STATUS_LABELS)


def text_verdict(verification: str) -> bool | None:
    """``extract_final_verification`` (eval_utils:190-227): the text after "Is the answer
    (or solution) correct (Yes/No)?" on the verification's last line, LaTeX wrappers and
    markup removed, is a yes if it contains "yes", else a no if it contains "no" (so "not"
    and "cannot" are noes, as there). Failing that, ``check_solution_status``
    (eval_utils:153-187): a "status: incorrect"-like phrase anywhere is a no, then a
    "status: correct"-like one a yes; else None.

    >>> text_verdict("...\\nIs the answer correct (Yes/No)? **Yes**")
    True
    >>> text_verdict("Solution status: [INCORRECT]"), text_verdict("No idea.")
    (False, None)
    """
    found = _VERDICT_QUESTION.search(verification.strip())
    if found:
        tail = _LATEX_WRAPPED.sub(r"\1", found.group(1))
        tail = _LATEX_LEFTOVERS.sub("", tail).lower().strip()
        if "yes" in tail:
            return True
        if "no" in tail:
            return False
    lowered = verification.lower()
    # The reference tries every "incorrect" pattern first; its second loop re-tries them
    # (each contains "correct") to no effect, then the "correct" ones.
    if any(p.search(lowered) for p in _SAYS_INCORRECT):
        return False
    if any(p.search(lowered) for p in _SAYS_CORRECT):
        return True
    return None


# ----------------------------------------------------------------- files


def _load(path: Path, limit: int, where: str) -> Any:
    import yaml

    size = path.stat().st_size
    if size > limit:
        raise ImportFormatError(where, f"is {size} bytes; at most {limit} are read per file")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the safe loader, in C if built
    try:
        with open(path, "rb") as fh:
            return yaml.load(fh, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise ImportFormatError(f"{where}{at}", f"malformed YAML ({error.problem})") from None
    except yaml.YAMLError as error:  # e.g. a byte that is not UTF-8
        raise ImportFormatError(where, f"malformed YAML ({error})") from None
    except RecursionError:  # the pure-Python loader, where libyaml is not built
        raise ImportFormatError(where, "malformed YAML (nested too deeply)") from None


def _mapping(data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ImportFormatError(where, f"expected a mapping, got {type(data).__name__}")
    return data


def _numbered(directory: Path, pattern: re.Pattern[str], name: str) -> list[Path]:
    """The entries ``pattern`` matches, in their number's order; they must be numbered
    0..n-1 (``name`` shows one, ``{}`` for its number)."""
    found: dict[int, Path] = {}
    for entry in directory.iterdir():
        match = pattern.fullmatch(entry.name)
        if match:
            found[int(match.group(1))] = entry
    missing = next((i for i in range(len(found)) if i not in found), None)
    if missing is not None:
        raise ImportFormatError(
            str(directory),
            f"{name.format(missing)} is missing: entries named like {name.format('N')} must be "
            f"numbered 0, 1, 2, ... with none left out",
        )
    return [found[i] for i in range(len(found))]


def samples_files(samples_dir: Path) -> list[Path]:
    """``samples_dir``'s ``{i}.yaml`` files in problem order (numbered 0..n-1)."""
    return _numbered(samples_dir, _SAMPLES_FILE, "{}.yaml")


def problem_dirs(verifications_dir: Path) -> list[Path]:
    """``verifications_dir``'s ``problem_{i}`` folders in problem order."""
    return _numbered(verifications_dir, _PROBLEM_DIR, "problem_{}")


def solution_files(problem_dir: Path) -> list[Path]:
    """A ``problem_{i}`` folder's ``solution_{j}.yaml`` files in solution order."""
    return _numbered(problem_dir, _SOLUTION_FILE, "solution_{}.yaml")


def read_problem(path: Path, where: str | None = None) -> tuple[list[str], Any]:
    """One samples file: its ``samples`` (strings) and its raw ``gt_answer``."""
    _, samples, gt_answer = read_problem_record(path, where)
    return samples, gt_answer


def read_problem_record(path: Path, where: str | None = None) -> tuple[str | None, list[str], Any]:
    """One samples file: its question (``question``, else ``problem``, as
    ``prepare_prompt`` reads it, generate_verifications.py:66-71; None if neither), its
    ``samples`` and its raw ``gt_answer``."""
    where = where or str(path)
    data = _mapping(_load(path, MAX_SAMPLES_FILE_BYTES, where), where)
    samples = data.get("samples")
    if not isinstance(samples, list) or not samples:
        raise ImportFormatError(where, "expected a non-empty list of solutions", field="samples")
    for j, sample in enumerate(samples):
        if not isinstance(sample, str):
            raise ImportFormatError(
                where, f"is {type(sample).__name__}, not a string", field=f"samples[{j}]"
            )
    if data.get("gt_answer") is None:
        raise ImportFormatError(where, "missing", field="gt_answer")
    question = data.get("question", data.get("problem"))
    if question is not None and not isinstance(question, str):
        raise ImportFormatError(where, f"expected text, got {type(question).__name__}", "question")
    return question, samples, data["gt_answer"]


def _probability(value: Any, where: str, field: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportFormatError(where, f"expected a number, got {value!r}", field=field)
    if value == -1:  # the reference's "not given" (generate_verifications.py:107, 154)
        return None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ImportFormatError(where, f"{value!r} is not a probability or -1", field=field)
    return float(value)


def read_verifications(path: Path, where: str | None = None) -> tuple[Verification, ...]:
    """One ``solution_j.yaml``: its verifications, -1 probabilities as None and the text
    verdict parsed (:func:`text_verdict`)."""
    return tuple(verification for _, verification in read_verification_items(path, where))


def read_verification_items(path: Path, where: str | None = None) -> list[tuple[str, Verification]]:
    """One ``solution_j.yaml``: each verification's text with its :class:`Verification`."""
    where = where or str(path)
    data = _mapping(_load(path, MAX_VERIFICATIONS_FILE_BYTES, where), where)
    items = data.get("verifications")
    if not isinstance(items, list) or not items:
        raise ImportFormatError(where, "expected a non-empty list", field="verifications")
    out = []
    for k, item in enumerate(items):
        field = f"verifications[{k}]"
        if not isinstance(item, dict):
            raise ImportFormatError(where, f"expected a mapping, got {item!r:.40}", field=field)
        for key in ("p(yes)", "p(no)", "verification"):
            if key not in item:
                raise ImportFormatError(where, "missing", field=f"{field}.{key}")
        text = item["verification"]
        if not isinstance(text, str):
            raise ImportFormatError(
                where, f"expected text, got {type(text).__name__}", field=f"{field}.verification"
            )
        verification = Verification(
            _probability(item["p(yes)"], where, f"{field}.p(yes)"),
            _probability(item["p(no)"], where, f"{field}.p(no)"),
            text_verdict(text),
        )
        out.append((text, verification))
    return out


def iter_pools(
    samples_dir: str | Path,
    verifications_dir: str | Path | None = None,
    *,
    answer_style: str = "minerva",
    max_samples: int | None = None,
    max_verified: int | None = None,
    max_verifications: int | None = None,
    correct: Callable[[str, str], bool] = reference_correct,
) -> Iterator[Pool]:
    """One :class:`Pool` per problem, in problem order, reading one problem's files at a
    time. ``max_*`` keep the first samples, verified samples and verifications (the
    reference's ``max_num_solutions_without_verifs``, ``max_num_solutions_with_verifs``,
    ``max_num_verifications``); ``correct(answer, gold)`` grades a normalised answer."""
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer style must be one of {ANSWER_STYLES}, got {answer_style!r}")
    samples_dir = Path(samples_dir)
    if not samples_dir.is_dir():
        raise ImportFormatError(str(samples_dir), "is not a directory")
    sample_files = _numbered(samples_dir, _SAMPLES_FILE, "{}.yaml")
    if not sample_files:
        raise ImportFormatError(str(samples_dir), "holds no samples files (0.yaml, 1.yaml, ...)")
    problem_dirs: list[Path | None] = [None] * len(sample_files)
    if verifications_dir is not None:
        verifications_dir = Path(verifications_dir)
        if not verifications_dir.is_dir():
            raise ImportFormatError(str(verifications_dir), "is not a directory")
        found = _numbered(verifications_dir, _PROBLEM_DIR, "problem_{}")
        if not found:
            raise ImportFormatError(str(verifications_dir), "holds no problem_0, problem_1, ...")
        if len(found) > len(sample_files):
            raise ImportFormatError(
                str(found[len(sample_files)]),
                f"has no samples file: {samples_dir} holds problems 0..{len(sample_files) - 1}",
            )
        problem_dirs = list(found)  # count_verifications: the problems are these folders
    for i, problem_dir in enumerate(problem_dirs):
        where = str(sample_files[i])
        texts, gt_answer = read_problem(sample_files[i], where)
        gold = reference_answer(gt_answer, where)
        verified: list[tuple[Verification, ...]] = []
        if problem_dir is not None:
            files = _numbered(problem_dir, _SOLUTION_FILE, "solution_{}.yaml")
            if len(files) > len(texts):
                raise ImportFormatError(
                    str(files[len(texts)]),
                    f"verifies a solution beyond the {len(texts)} in {where}",
                )
            # a verified sample past max_samples is cut with the others
            files = files[: min(max_verified or len(files), max_samples or len(files))]
            verified = [read_verifications(f)[:max_verifications] for f in files]
        texts = texts[:max_samples]
        graded: dict[str, bool] = {}
        samples = []
        for j, text in enumerate(texts):
            answer = predicted_answer(text, answer_style)
            if answer is not None and answer not in graded:
                graded[answer] = bool(correct(answer, gold))
            samples.append(
                Sample(
                    answer,
                    answer is not None and graded[answer],
                    verifications=verified[j] if j < len(verified) else (),
                )
            )
        yield Pool(tuple(samples))


def read_pools(
    samples_dir: str | Path, verifications_dir: str | Path | None = None, **options: Any
) -> list[Pool]:
    """Every problem's pool (see :func:`iter_pools`)."""
    return list(iter_pools(samples_dir, verifications_dir, **options))
