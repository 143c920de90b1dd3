"""Reading trace files and parsing the field's formats into plain records.

Nothing here touches the database: :func:`iter_parsed` turns a file into
:class:`ParsedTrace` objects and raises :class:`ImportFormatError` naming the file,
the line or record, and the field at the first problem it finds. The importer
writes inside one transaction, so an error anywhere means nothing is written.

Formats (``--format``): processbench, prm800k, prm800k-stepwise, math-shepherd,
trl, bbm, gsm8k, gsm8k-solutions, jsonl; ``auto`` detects one from the first
record's keys. Files: JSON (an array, one object, or concatenated objects as
PRM800K ships them), JSONL, parquet, each optionally gzip-compressed.

Every parsed trace is checked before it is handed on (:func:`_check_trace`): text
PostgreSQL cannot store (NUL, lone surrogates) and values longer than their model
field are refused here, with the record named, instead of failing inside ``COPY``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from annotator.labelling import LabelError, normalise_label
from annotator.models import Annotation, LabelScheme, Trace
from scoring.steps import SHEPHERD_TAG, SPLITTERS, split_lines, split_steps

MAX_RECORD_BYTES = 16 * 1024 * 1024
FORMATS = (
    "processbench",
    "prm800k",
    "prm800k-stepwise",
    "math-shepherd",
    "trl",
    "bbm",
    "gsm8k",
    "gsm8k-solutions",
    "jsonl",
)
UTF8_BOM = b"\xef\xbb\xbf"
# Model field limits: checked on import (_check_trace) rather than failing in COPY.
_MAX_LENGTHS: dict[str, int] = {
    name: Trace._meta.get_field(name).max_length for name in ("external_id", "generator", "split")
}
_MAX_ANNOTATOR_LENGTH: int = Annotation._meta.get_field("external_annotator").max_length


class ImportFormatError(ValueError):
    """Bad input, with enough context for the user to find and fix it."""

    def __init__(self, where: str, message: str, field: str | None = None):
        self.where = where
        self.field = field
        self.message = message
        prefix = f"{where}, field '{field}'" if field else where
        super().__init__(f"{prefix}: {message}")


@dataclass
class ParsedLabel:
    first_error_step: int | None
    step_ratings: list[int | None] | None = None
    gave_up: bool = False
    bad_problem: bool = False
    external_annotator: str = ""
    seconds_spent: float | None = None


@dataclass
class ParsedTrace:
    problem: str
    steps: list[str]
    external_id: str
    reference_answer: str = ""
    reference_solution: str = ""
    generator: str = ""
    split: str = ""
    final_answer: str = ""
    final_answer_correct: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: ParsedLabel | None = None


@dataclass(frozen=True)
class ParseOptions:
    split: str = ""
    step_splitter: str = "paragraphs"
    default_split: str = ""  # from the file name, for formats whose records carry none


# ---------------------------------------------------------------- reading files


@dataclass
class RecordSource:
    """The records of one file, with a count when it is cheap to know."""

    name: str
    records: Iterator[tuple[str, Any]]
    total: int | None


def open_records(path: str | Path, display_name: str | None = None) -> RecordSource:
    """Yield ``(where, record)`` pairs from a JSON, JSONL or parquet file, gzip or not."""
    path = Path(path)
    name = display_name or path.name
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PAR1"):
        return _parquet_records(path, name)
    compressed = head.startswith(b"\x1f\x8b")
    opener: Callable[[], io.BufferedIOBase] = (
        partial(gzip.open, path, "rb") if compressed else partial(open, path, "rb")
    )
    with opener() as fh:
        start = _first_non_space(fh)
        first_line = fh.readline(MAX_RECORD_BYTES + 1) if start == b"{" else b""
    if start == b"":
        raise ImportFormatError(name, "the file is empty")
    if start == b"[":
        return _json_document_records(opener, name)
    if start != b"{":
        raise ImportFormatError(
            name, "not JSON, JSONL or parquet (expected '[', '{' or a parquet header)"
        )
    try:
        orjson.loads(first_line)
        one_object_per_line = True
    except orjson.JSONDecodeError:
        one_object_per_line = False
    if one_object_per_line:
        total = None if compressed else _count_lines(path)
        return RecordSource(name, _jsonl_records(opener, name), total)
    return _json_document_records(opener, name)


def _first_non_space(fh) -> bytes:
    while True:
        ch = fh.read(1)
        if ch == b"":
            return b""
        if ch == b"\xef":  # UTF-8 byte order mark
            fh.read(2)
            continue
        if not ch.isspace():
            fh.seek(fh.tell() - 1)
            return ch


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            where, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None


def _jsonl_records(opener, name: str) -> Iterator[tuple[str, Any]]:
    with opener() as fh:
        line_no = 0
        while True:
            raw = fh.readline(MAX_RECORD_BYTES + 1)
            if not raw:
                return
            line_no += 1
            where = f"{name}, line {line_no}"
            if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
                raise ImportFormatError(
                    where, f"line is longer than {MAX_RECORD_BYTES // (1024 * 1024)} MiB"
                )
            if line_no == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                _decode(raw, where)  # a clearer message when the cause is the encoding
                raise ImportFormatError(where, f"malformed JSON ({exc})") from None
            yield where, record


def _json_document_records(opener, name: str) -> RecordSource:
    """A JSON array, a single object, or objects one after another (PRM800K's files)."""
    with opener() as fh:
        raw = fh.read()
    text = _decode_document(raw, name)
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if text.startswith("[", pos):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{name}, line {exc.lineno}", f"malformed JSON ({exc.msg})"
            ) from None
        if not isinstance(value, list):
            raise ImportFormatError(name, "expected a JSON array of records")
        records = ((f"{name}, record {i}", rec) for i, rec in enumerate(value, start=1))
        return RecordSource(name, records, len(value))

    values = []
    line, counted_to = 1, 0
    while pos < len(text):
        line += text.count("\n", counted_to, pos)  # counted incrementally: linear overall
        counted_to = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{name}, line {exc.lineno}", f"malformed JSON ({exc.msg})"
            ) from None
        values.append((f"{name}, record {len(values) + 1} (line {line})", value))
        pos = _skip_space(text, end)
    return RecordSource(name, iter(values), len(values))


def _decode_document(raw: bytes, name: str) -> str:
    raw = raw.removeprefix(UTF8_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ImportFormatError(
            f"{name}, line {line}",
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})",
        ) from None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parquet_records(path: Path, name: str) -> RecordSource:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportFormatError(name, f"unreadable parquet file ({exc})") from None

    def records() -> Iterator[tuple[str, Any]]:
        row = 0
        for batch in parquet.iter_batches(batch_size=2048):
            for record in batch.to_pylist():
                row += 1
                yield f"{name}, row {row}", record

    return RecordSource(name, records(), parquet.metadata.num_rows)


# ---------------------------------------------------------------- field helpers


def _require(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise ImportFormatError(where, f"expected a JSON object, got {type(record).__name__}")
    if key not in record or record[key] is None:
        raise ImportFormatError(where, "missing", field=key)
    return record[key]


def _text(record: dict, key: str, where: str, *, required: bool = True) -> str:
    if not required and record.get(key) is None:
        return ""
    value = _require(record, key, where)
    if not isinstance(value, str):
        raise ImportFormatError(where, f"expected a string, got {type(value).__name__}", field=key)
    if required and not value.strip():
        raise ImportFormatError(where, "is empty", field=key)
    return value


def _string_list(record: dict, key: str, where: str) -> list[str]:
    """A list of strings, possibly empty, possibly holding empty strings."""
    value = _require(record, key, where)
    if not isinstance(value, list):
        raise ImportFormatError(
            where, f"expected a list of strings, got {type(value).__name__}", field=key
        )
    for i, step in enumerate(value):
        if not isinstance(step, str):
            raise ImportFormatError(
                where, f"step {i} is {type(step).__name__}, not a string", field=key
            )
    return value


def _no_empty_steps(steps: list[str], where: str, key: str) -> None:
    for i, step in enumerate(steps):
        if not step.strip():
            raise ImportFormatError(where, f"step {i} is empty", field=key)


def _steps(record: dict, key: str, where: str) -> list[str]:
    value = _string_list(record, key, where)
    if not value:
        raise ImportFormatError(where, "has no steps", field=key)
    _no_empty_steps(value, where, key)
    return value


def _object(record: dict, key: str, where: str, *, required: bool = True) -> dict:
    """``record[key]`` as a dict; ``{}`` when an optional one is absent.

    Parquet has no free-form nested type, so parquet files (our own exports among
    them) carry nested objects such as PRM800K's ``question`` and ``label`` or the
    ``metadata`` of the jsonl format as JSON text: a string holding a JSON object
    is decoded, so those files import as their JSONL twins do."""
    if not required and record.get(key) is None:
        return {}
    value = _json_text_object(_require(record, key, where), where, key)
    if not isinstance(value, dict):
        raise ImportFormatError(where, f"expected an object, got {type(value).__name__}", field=key)
    return value


def _json_text_object(value: Any, where: str, key: str) -> Any:
    """``value`` decoded when it is a string holding a JSON object, else unchanged."""
    if not (isinstance(value, str) and value.lstrip().startswith("{")):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            where, f"holds malformed JSON text ({exc.msg})", field=key
        ) from None


def _first_error(value: Any, num_steps: int, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImportFormatError(
            where, f"expected an integer, got {type(value).__name__}", field=key
        )
    if not -1 <= value < num_steps:
        raise ImportFormatError(
            where, f"{value} is out of range: use -1 (all correct) or 0..{num_steps - 1}", field=key
        )
    return value


def _optional_bool(record: dict, key: str, where: str) -> bool | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ImportFormatError(where, f"expected true or false, got {value!r}", field=key)
    return value


def _content_id(*parts: str) -> str:
    """A stable id for records that carry none, so re-imports are idempotent.

    ``surrogatepass``: a lone surrogate must not crash the hash before
    :func:`_check_trace` can name the record and field that holds it."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:24]


def _problem_key(question: str) -> str:
    """The id prefix that the GSM8K files' traces of one problem share."""
    return _content_id(question)[:16]


def derived_split(name: str) -> str:
    """A split made up from a file name or an id prefix, cut to fit the split column.
    (A split the user or the record gives is checked instead: see _check_trace.)"""
    return name[: _MAX_LENGTHS["split"]]


def _str_id(record: dict, key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ImportFormatError(
            where, f"expected a string or integer id, got {type(value).__name__}", field=key
        )
    return str(value)


# ---------------------------------------------------------------- formats


def parse_processbench(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    external_id = _str_id(record, "id", where)
    if external_id is None:
        raise ImportFormatError(where, "missing", field="id")
    steps = _steps(record, "steps", where)
    label = _first_error(_require(record, "label", where), len(steps), where, "label")
    correct = _optional_bool(record, "final_answer_correct", where)
    split = options.split or (
        derived_split(external_id.rsplit("-", 1)[0])
        if "-" in external_id
        else options.default_split
    )
    return [
        ParsedTrace(
            problem=_text(record, "problem", where),
            steps=steps,
            external_id=external_id,
            generator=_text(record, "generator", where, required=False),
            split=split,
            final_answer_correct=correct,
            label=ParsedLabel(first_error_step=label),
        )
    ]


_RATINGS = (-1, 0, 1)


def parse_prm800k(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """PRM800K's original schema.

    The trace follows the chosen completion of each labelled step (a human-written
    step where the labeller wrote one; the first -1 completion where a
    ``found_error`` solution stops). When ``question.pre_generated_steps`` is
    present (phase 2) the trace is that full model solution, rated up to where the
    labeller stopped.
    """
    question = _object(record, "question", where)
    problem = _text(question, "problem", where + ", question")
    label = _object(record, "label", where)
    label_steps = _require(label, "steps", where + ", label")
    if not isinstance(label_steps, list):
        raise ImportFormatError(where, "expected a list", field="label.steps")
    finish_reason = label.get("finish_reason") or ""

    chosen_texts: list[str] = []
    ratings: list[int | None] = []
    for i, step in enumerate(label_steps):
        step_where = f"{where}, label.steps[{i}]"
        completions = _require(step, "completions", step_where)
        if not isinstance(completions, list):
            raise ImportFormatError(step_where, "expected a list", field="completions")
        for j, completion in enumerate(completions):
            rating = completion.get("rating") if isinstance(completion, dict) else None
            if rating is not None and (isinstance(rating, bool) or rating not in _RATINGS):
                raise ImportFormatError(
                    step_where,
                    f"rating {rating!r} is not -1, 0 or 1",
                    field=f"completions[{j}].rating",
                )
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chosen is not None:
            if (
                isinstance(chosen, bool)
                or not isinstance(chosen, int)
                or not 0 <= chosen < len(completions)
            ):
                raise ImportFormatError(
                    step_where, f"{chosen!r} is not a completion index", field="chosen_completion"
                )
            text, rating = (
                _text(completions[chosen], "text", step_where),
                completions[chosen].get("rating"),
            )
        elif isinstance(human, dict):
            text, rating = (
                _text(human, "text", step_where + ", human_completion"),
                human.get("rating"),
            )
        else:
            wrong = [c for c in completions if isinstance(c, dict) and c.get("rating") == -1]
            if finish_reason != "found_error" or not wrong:
                break  # the labeller stopped here without choosing (give up, bad problem)
            text, rating = _text(wrong[0], "text", step_where), -1
        chosen_texts.append(text)
        ratings.append(rating)

    pre_generated = question.get("pre_generated_steps")
    if pre_generated:
        steps = _steps(question, "pre_generated_steps", where + ", question")
        step_ratings = ratings[: len(steps)] + [None] * (len(steps) - len(ratings))
        final_answer = question.get("pre_generated_answer") or ""
    else:
        steps = chosen_texts
        step_ratings = ratings
        final_answer = ""
    if not steps:
        raise ImportFormatError(where, "no labelled steps", field="label.steps")

    first_error: int | None
    if -1 in step_ratings:
        first_error = step_ratings.index(-1)
    elif finish_reason == "solution" and len(ratings) >= len(steps):
        first_error = -1
    else:
        first_error = None
    generation = record.get("generation")
    labeler = record.get("labeler") or ""
    external_id = _content_id(str(labeler), str(record.get("timestamp") or ""), problem, *steps)
    total_time = label.get("total_time")
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=external_id,
            reference_answer=str(question.get("ground_truth_answer") or ""),
            reference_solution=str(question.get("ground_truth_solution") or ""),
            generator=f"prm800k-generation-{generation}" if generation is not None else "prm800k",
            split=options.split or options.default_split,
            final_answer=str(final_answer),
            metadata={
                "finish_reason": finish_reason,
                "quality_control": bool(record.get("is_quality_control_question")),
                "initial_screening": bool(record.get("is_initial_screening_question")),
                "timestamp": record.get("timestamp"),
            },
            label=ParsedLabel(
                first_error_step=first_error,
                step_ratings=step_ratings,
                gave_up=finish_reason == "give_up",
                bad_problem=finish_reason == "bad_problem",
                external_annotator=str(labeler),
                seconds_spent=total_time / 1000 if isinstance(total_time, int | float) else None,
            ),
        )
    ]


_STEP_PREFIX = re.compile(r"^\s*Step\s*\d+\s*:\s*")
# Math-Shepherd's step tag: " ки" closing a step, so followed by a newline or the end.
# "ки" alone is a common Cyrillic letter pair ("руки") and must not split a step.
_SHEPHERD_TAG_AT_STEP_END = re.compile(rf" {SHEPHERD_TAG}(?=\r?\n|\Z)")
_STEP_MARKER = re.compile(r"(?<!\S)Step\s*(\d+)\s*:")


def _has_shepherd_tags(text: Any) -> bool:
    return isinstance(text, str) and _SHEPHERD_TAG_AT_STEP_END.search(text) is not None


def parse_math_shepherd(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """``input``: the question, then steps ``Step k: ... ки`` each closed by the tag
    `` ки`` at the end of its line; ``label``: the same text with ``+``/``-`` in place
    of each tag.

    The question ends where the solution's "Step 1:" starts: see
    :func:`_shepherd_solution_start`."""
    text = _text(record, "input", where)
    label_text = _text(record, "label", where, required=False)
    tags = list(_SHEPHERD_TAG_AT_STEP_END.finditer(text))
    if not tags:
        raise ImportFormatError(
            where,
            f"has no ' {SHEPHERD_TAG}' step tags (at the end of a line or of the text)",
            field="input",
        )
    solution_start = _shepherd_solution_start(text, tags[0].start())
    if solution_start is None:
        raise ImportFormatError(
            where, "cannot find where the question ends ('Step 1:')", field="input"
        )
    problem = text[:solution_start].strip()
    if not problem:
        raise ImportFormatError(where, "the question before 'Step 1:' is empty", field="input")
    step_starts = [solution_start] + [tag.end() for tag in tags[:-1]]
    steps = [
        _STEP_PREFIX.sub("", text[begin : tag.start()]).strip()
        for begin, tag in zip(step_starts, tags, strict=True)
    ]
    if any(not step for step in steps):
        raise ImportFormatError(where, "a step between tags is empty", field="input")

    ratings = _shepherd_ratings(label_text, tags, where) if label_text else None
    first_error = (ratings.index(-1) if -1 in ratings else -1) if ratings is not None else None
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=_str_id(record, "id", where) or _content_id(text),
            reference_answer=_text(record, "answer", where, required=False),
            generator=_text(record, "generator", where, required=False),
            split=options.split or options.default_split,
            label=ParsedLabel(first_error_step=first_error, step_ratings=ratings)
            if ratings
            else None,
        )
    ]


def _shepherd_solution_start(text: str, first_tag: int) -> int | None:
    """Where the solution's "Step 1:" starts, or None.

    Both the question ("Step 1: mix, Step 2: bake. How long...?") and step 1 itself
    (a model numbering its own plan: "... Step 1: find the rate ...") may say
    "Step 1:". The solution's is the first "Step 1:" (at the start or after
    whitespace) from which step 1 runs to the first tag without passing a marker of a
    later step, since step 2 starts only after that tag; failing that, the first."""
    markers = list(_STEP_MARKER.finditer(text, 0, first_tag))
    ones = [i for i, marker in enumerate(markers) if int(marker.group(1)) == 1]
    for i in ones:
        if all(int(later.group(1)) == 1 for later in markers[i + 1 :]):
            return markers[i].start()
    return markers[ones[0]].start() if ones else None


def _shepherd_ratings(label_text: str, tags: list[re.Match], where: str) -> list[int | None]:
    """The ``+``/``-`` standing in ``label_text`` where ``input`` has each tag: every
    earlier two-letter tag became one character, so tag k moves k characters left."""
    ratings: list[int | None] = []
    for k, tag in enumerate(tags):
        position = tag.start() + 1 - k
        mark = label_text[position] if position < len(label_text) else ""
        if mark not in ("+", "-"):
            raise ImportFormatError(
                where, f"does not match 'input' at step {k} (expected '+' or '-')", field="label"
            )
        ratings.append(1 if mark == "+" else -1)
    return ratings


def parse_trl(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    prompt = _text(record, "prompt", where)
    steps = _steps(record, "completions", where)
    labels = _require(record, "labels", where)
    if not isinstance(labels, list) or not all(isinstance(v, bool) for v in labels):
        raise ImportFormatError(where, "expected a list of true/false", field="labels")
    if len(labels) != len(steps):
        raise ImportFormatError(
            where, f"has {len(labels)} labels for {len(steps)} completions", field="labels"
        )
    ratings: list[int | None] = [1 if ok else -1 for ok in labels]
    first_error = labels.index(False) if False in labels else -1
    return [
        ParsedTrace(
            problem=prompt,
            steps=steps,
            external_id=_str_id(record, "id", where) or _content_id(prompt, *steps),
            generator=_text(record, "generator", where, required=False),
            split=options.split or options.default_split,
            label=ParsedLabel(first_error_step=first_error, step_ratings=ratings),
        )
    ]


def parse_bbm(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """BIG-Bench Mistake: ``{input, steps[], target, answer, mistake_index}``.

    A few traces hold an empty step where the model wrote a blank line
    (dyck_languages.jsonl line 539, step 54). Nothing in it can be judged, so empty
    steps are dropped and ``mistake_index`` is shifted down past them, still pointing
    at the same step; the file's indexes of the dropped steps are kept in the metadata
    (``dropped_empty_steps``). A ``mistake_index`` at an empty step is an error."""
    problem = _text(record, "input", where)
    raw_steps = _string_list(record, "steps", where)
    steps = [step for step in raw_steps if step.strip()]
    if not steps:
        raise ImportFormatError(where, "has no steps", field="steps")
    dropped = [i for i, step in enumerate(raw_steps) if not step.strip()]
    mistake = record.get("mistake_index")
    first_error = (
        -1 if mistake is None else _first_error(mistake, len(raw_steps), where, "mistake_index")
    )
    if first_error in dropped:
        raise ImportFormatError(
            where, f"{first_error} points at an empty step", field="mistake_index"
        )
    if first_error >= 0:
        first_error -= sum(1 for i in dropped if i < first_error)
    target = record.get("target")
    answer = record.get("answer")
    correct = None
    if target is not None and answer is not None:
        correct = str(answer).strip() == str(target).strip()
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=_str_id(record, "id", where) or _content_id(problem, *steps),
            reference_answer="" if target is None else str(target),
            generator=_text(record, "generator", where, required=False) or "PaLM 2",
            split=options.split or options.default_split,
            final_answer="" if answer is None else str(answer),
            final_answer_correct=correct,
            metadata={"dropped_empty_steps": dropped} if dropped else {},
            label=ParsedLabel(first_error_step=first_error),
        )
    ]


_GSM8K_FINAL = re.compile(r"^\s*A:\s*(.*?)\s*$")


def _gsm8k_answer(solution: str) -> str:
    lines = split_lines(solution)
    if lines:
        match = _GSM8K_FINAL.match(lines[-1])
        if match:
            return match.group(1)
    if "####" in solution:
        return solution.rsplit("####", 1)[1].strip()
    return ""


def parse_gsm8k_solutions(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """OpenAI's GSM8K model-solutions file: several solutions per problem, outcome only."""
    question = _text(record, "question", where)
    ground_truth = _text(record, "ground_truth", where)
    pid = _problem_key(question)
    traces = []
    for key, value in record.items():
        if not isinstance(value, dict) or "solution" not in value:
            continue
        solution = _text(value, "solution", where + f", {key}")
        steps = split_lines(solution)
        if not steps:
            raise ImportFormatError(where, "has no steps", field=f"{key}.solution")
        traces.append(
            ParsedTrace(
                problem=question,
                steps=steps,
                external_id=f"{pid}/{key}",
                reference_answer=_gsm8k_answer(ground_truth),
                reference_solution=ground_truth,
                generator=key,
                split=options.split or options.default_split,
                final_answer=_gsm8k_answer(solution),
                final_answer_correct=_optional_bool(value, "is_correct", where + f", {key}"),
            )
        )
    if not traces:
        raise ImportFormatError(where, "has no model solutions (objects with a 'solution' field)")
    return traces


def parse_gsm8k(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """GSM8K itself: ``{question, answer}``, the answer being the reference solution,
    one line per step with calculator notes ``<<a*b=c>>``, then ``#### <n>``.

    One trace per problem, generator ``reference``, correct by definition: its steps
    are the solution's lines before ``####`` (calculator notes kept as written), its
    final answer the number after it. The problem's reference answer and solution are
    filled in too; problems are keyed by their text and the id shares its prefix with
    the model-solutions file's traces, so both files' traces meet on one problem."""
    question = _text(record, "question", where)
    solution = _text(record, "answer", where)
    body, marker, answer = solution.rpartition("####")
    answer = answer.strip()
    if not marker or not answer:
        raise ImportFormatError(where, "has no final '#### <answer>' line", field="answer")
    steps = split_lines(body)
    if not steps:
        raise ImportFormatError(where, "has no solution lines before '####'", field="answer")
    return [
        ParsedTrace(
            problem=question,
            steps=steps,
            external_id=f"{_problem_key(question)}/reference",
            reference_answer=answer,
            reference_solution=solution,
            generator="reference",
            split=options.split or options.default_split,
            final_answer=answer,
            final_answer_correct=True,
        )
    ]


def parse_prm800k_stepwise(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """PRM800K phase-1 labels re-shaped one row per rated candidate step:
    ``{instruction, responses[], next_response, answer, is_human_response,
    is_solution, is_preferred_response, rating}``.

    A row judges only its last step: ``responses`` are the steps accepted before it
    (chosen or written by the labeller, so rated 0 or +1, never -1, but which one
    the row does not say) and ``next_response`` the candidate it rates. It becomes
    one trace, ``responses + [next_response]``, with the earlier steps unrated
    (``None``) and the last rated as in the row: -1 puts the first error at the last
    step; 0 (fine, no progress) or +1 means no step of the trace is wrong (first
    error -1); a null rating gives no label. The row carries no id, so the id hashes
    the whole row: re-imports skip what is there, and a row repeated verbatim in the
    file is imported once and counted as a duplicate."""
    problem = _text(record, "instruction", where)
    earlier = _string_list(record, "responses", where)
    _no_empty_steps(earlier, where, "responses")
    steps = [*earlier, _text(record, "next_response", where)]
    rating = record.get("rating")
    if rating is not None and (isinstance(rating, bool) or rating not in _RATINGS):
        raise ImportFormatError(where, f"{rating!r} is not -1, 0, 1 or null", field="rating")
    flags = {
        key: _optional_bool(record, key, where)
        for key in ("is_human_response", "is_solution", "is_preferred_response")
    }
    label = None
    if rating is not None:
        label = ParsedLabel(
            first_error_step=len(earlier) if rating == -1 else -1,
            step_ratings=[None] * len(earlier) + [rating],
        )
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=_content_id(json.dumps(record, sort_keys=True, default=str)),
            generator="prm800k",
            split=options.split or options.default_split,
            final_answer=_text(record, "answer", where, required=False),
            metadata=flags,
            label=label,
        )
    ]


_PROBLEM_KEYS = ("problem", "question", "prompt")
_SOLUTION_KEYS = ("solution", "response", "completion")


def parse_jsonl(record: dict, where: str, options: ParseOptions) -> list[ParsedTrace]:
    """Generic records: a problem, then ``steps`` (a list) or a solution string split
    with the configured splitter; optional id, answer, generator, split, label
    (``first_error_step`` or ``label``, with ``step_ratings`` that agree with it),
    metadata (an object, or JSON text holding one)."""
    problem_key = next((k for k in _PROBLEM_KEYS if k in record), "problem")
    problem = _text(record, problem_key, where)
    if "steps" in record:
        steps = _steps(record, "steps", where)
    else:
        solution_key = next((k for k in _SOLUTION_KEYS if k in record), None)
        if solution_key is None:
            raise ImportFormatError(
                where, "missing (or 'solution' to split into steps)", field="steps"
            )
        steps = split_steps(_text(record, solution_key, where), options.step_splitter)
        if not steps:
            raise ImportFormatError(where, "has no steps after splitting", field=solution_key)
    reference = record.get("reference_answer", record.get("answer"))
    return [
        ParsedTrace(
            problem=problem,
            steps=steps,
            external_id=_str_id(record, "id", where) or _content_id(problem, *steps),
            reference_answer="" if reference is None else str(reference),
            generator=_text(record, "generator", where, required=False),
            split=options.split
            or _text(record, "split", where, required=False)
            or options.default_split,
            final_answer=_text(record, "final_answer", where, required=False),
            final_answer_correct=_optional_bool(record, "final_answer_correct", where),
            metadata=_object(record, "metadata", where, required=False),
            label=_jsonl_label(record, len(steps), where),
        )
    ]


def _jsonl_label(record: dict, num_steps: int, where: str) -> ParsedLabel | None:
    """The generic format's label, refused when its step ratings contradict its first
    error (a -1 before it or in an all-correct trace, or the first error rated 0/+1)."""
    label_key = next((k for k in ("first_error_step", "label") if record.get(k) is not None), None)
    if label_key is None:
        return None
    first_error = _first_error(record[label_key], num_steps, where, label_key)
    ratings = record.get("step_ratings")
    if ratings is None:
        return ParsedLabel(first_error_step=first_error)
    if (
        not isinstance(ratings, list)
        or len(ratings) != num_steps
        or any(r is not None and (isinstance(r, bool) or r not in _RATINGS) for r in ratings)
    ):
        raise ImportFormatError(
            where, f"expected {num_steps} entries of -1, 0, 1 or null", field="step_ratings"
        )
    try:
        normalise_label(num_steps, LabelScheme.FIRST_ERROR, first_error, ratings)
        if first_error >= 0 and ratings[first_error] not in (None, -1):
            raise LabelError(
                f"step {first_error} is rated {ratings[first_error]} but is the first error"
            )
    except LabelError as exc:
        raise ImportFormatError(
            where, f"contradicts {label_key} {first_error}: {exc}", field="step_ratings"
        ) from None
    return ParsedLabel(first_error_step=first_error, step_ratings=ratings)


PARSERS: dict[str, Callable[[dict, str, ParseOptions], list[ParsedTrace]]] = {
    "processbench": parse_processbench,
    "prm800k": parse_prm800k,
    "prm800k-stepwise": parse_prm800k_stepwise,
    "math-shepherd": parse_math_shepherd,
    "trl": parse_trl,
    "bbm": parse_bbm,
    "gsm8k": parse_gsm8k,
    "gsm8k-solutions": parse_gsm8k_solutions,
    "jsonl": parse_jsonl,
}


def detect_format(record: dict, where: str) -> str:
    """Guess the format from the keys of the first record."""
    keys = set(record)
    if {"prompt", "completions", "labels"} <= keys:
        return "trl"
    if {"problem", "steps", "label"} <= keys:
        return "processbench"
    if {"question", "label"} <= keys and isinstance(
        _json_text_object(record["label"], where, "label"), dict
    ):
        return "prm800k"
    if {"instruction", "responses", "next_response"} <= keys:
        return "prm800k-stepwise"
    if "input" in keys and _has_shepherd_tags(record["input"]):
        return "math-shepherd"
    if {"input", "steps"} <= keys and "mistake_index" in keys:
        return "bbm"
    if "question" in keys and any(isinstance(v, dict) and "solution" in v for v in record.values()):
        return "gsm8k-solutions"
    if keys & set(_PROBLEM_KEYS) and (keys & {"steps", *_SOLUTION_KEYS}):
        return "jsonl"
    if {"question", "answer"} <= keys and "####" in str(record["answer"]):
        return "gsm8k"
    raise ImportFormatError(
        where,
        f"cannot detect the format from the keys {sorted(keys)}; pass --format (one of {', '.join(FORMATS)})",
    )


def iter_parsed(
    source: RecordSource, fmt: str = "auto", options: ParseOptions | None = None
) -> Iterator[tuple[str, str, list[ParsedTrace]]]:
    """Yield ``(format, where, traces)`` per record; the format is fixed by the first record."""
    options = options or ParseOptions()
    if fmt != "auto" and fmt not in PARSERS:
        raise ImportFormatError(
            source.name, f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}"
        )
    if options.step_splitter not in SPLITTERS:
        raise ImportFormatError(
            source.name,
            f"unknown step splitter {options.step_splitter!r}; choose one of {', '.join(SPLITTERS)}",
        )
    _check_length(options.split, _MAX_LENGTHS["split"], source.name, "split")
    parser = PARSERS.get(fmt)
    seen_any = False
    for where, record in source.records:
        if not isinstance(record, dict):
            raise ImportFormatError(where, f"expected a JSON object, got {type(record).__name__}")
        if parser is None:
            fmt = detect_format(record, where)
            parser = PARSERS[fmt]
        seen_any = True
        traces = parser(record, where, options)
        for trace in traces:
            _check_trace(trace, where)
        yield fmt, where, traces
    if not seen_any:
        raise ImportFormatError(source.name, "the file holds no records")


# ---------------------------------------------------------------- what the database takes

_TEXT_FIELDS = (
    "problem",
    "external_id",
    "reference_answer",
    "reference_solution",
    "generator",
    "split",
    "final_answer",
)
# PostgreSQL text cannot hold NUL; a lone surrogate is not Unicode and cannot be encoded.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_trace(trace: ParsedTrace, where: str) -> None:
    """Refuse what the database would reject mid-``COPY``, naming the trace's field
    (``steps[3]``, ``metadata.note``...): text PostgreSQL cannot store, and values
    longer than their model field."""
    for name in _TEXT_FIELDS:
        _check_text(getattr(trace, name), where, name)
    for i, step in enumerate(trace.steps):
        _check_text(step, where, f"steps[{i}]")
    _check_json(trace.metadata, where, "metadata")
    for name, limit in _MAX_LENGTHS.items():
        _check_length(getattr(trace, name), limit, where, name)
    if trace.label is not None:
        annotator = trace.label.external_annotator
        _check_text(annotator, where, "external_annotator")
        _check_length(annotator, _MAX_ANNOTATOR_LENGTH, where, "external_annotator")


def _check_text(value: str, where: str, field: str) -> None:
    match = _UNSTORABLE.search(value)
    if match is None:
        return
    char = match.group()
    what = (
        "a NUL character (\\u0000), which the database cannot store"
        if char == "\x00"
        else f"a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode"
    )
    raise ImportFormatError(where, f"contains {what}", field=field)


def _check_json(value: Any, where: str, field: str) -> None:
    if isinstance(value, str):
        _check_text(value, where, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), where, f"{field} (a key)")
            _check_json(item, where, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, where, f"{field}[{i}]")


def _check_length(value: str, limit: int, where: str, field: str) -> None:
    if len(value) > limit:
        raise ImportFormatError(
            where, f"is {len(value)} characters long; at most {limit} fit", field=field
        )
