"""The Stepwise data model.

A Project holds Problems; each Problem has any number of Traces (model solutions,
so best-of-N data is natural); a Trace is a list of Steps. Annotations are
append-only: a new submission adds a version and flips ``is_latest`` on the old
one, the only column ever updated on an existing annotation.

Step indexes are 0-based everywhere; ``first_error_step == -1`` means "all steps
correct" and ``None`` means the annotation gives no verdict (gave up, bad problem).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import orjson
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Cast
from django.utils import timezone

from annotator import database

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

T = TypeVar("T")


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"


class LabelScheme(models.TextChoices):
    FIRST_ERROR = "first_error", "First error only (ProcessBench style)"
    PER_STEP = "per_step", "Every step up to the first error rated (PRM800K style)"


class QueueOrder(models.TextChoices):
    IMPORT = "import", "Import order"
    RANDOM = "random", "Random (seeded)"
    # Model-driven orders (annotator/queue.py), computed from the project's queue run.
    CONVINCING_WRONG = "convincing_wrong", "Convincing wrong answers first (queue run)"
    RUNS_DISAGREE = "runs_disagree", "Where the project's runs disagree most first"
    RUN_VS_HUMANS = "run_vs_humans", "Where the queue run disagrees with the labels first"
    TOOL_VS_ROLLOUTS = "tool_vs_rollouts", "Where the tool and the rollouts disagree first"


class Project(models.Model):
    slug = models.SlugField(unique=True, max_length=80)
    name = models.CharField(max_length=200)
    guidelines = models.TextField(blank=True, help_text="Labelling guidelines shown to annotators.")
    annotators_per_trace = models.PositiveSmallIntegerField(default=1)
    label_scheme = models.CharField(
        max_length=20, choices=LabelScheme.choices, default=LabelScheme.FIRST_ERROR
    )
    show_reference_answer = models.BooleanField(default=True)
    show_model_scores = models.BooleanField(default=False)
    show_timer = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Show annotators a clock of the time spent on the trace in view.",
    )
    # Queue and quality settings of the annotation workspace (annotator/queue.py).
    queue_order = models.CharField(
        max_length=20, choices=QueueOrder.choices, default=QueueOrder.IMPORT, db_default="import"
    )
    queue_seed = models.IntegerField(default=0, db_default=0)
    # The run whose scores the model-driven queue orders read; annotators never see them.
    queue_run = models.ForeignKey(
        "ScoringRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The scoring run that orders the queue (model-driven orders only).",
    )
    # Which order Trace.queue_rank was computed for ("random:7"); a mismatch re-ranks.
    queue_ranked_as = models.CharField(max_length=64, blank=True, default="", db_default="")
    lock_minutes = models.PositiveSmallIntegerField(
        default=10,
        db_default=10,
        validators=[MinValueValidator(1)],
        help_text="How long a served trace is held for its annotator.",
    )
    max_holds_per_person = models.PositiveSmallIntegerField(
        default=3,
        db_default=3,
        validators=[MinValueValidator(1)],
        help_text="Traces one annotator may hold at once (opened by link and claimed).",
    )
    gold_rate = models.FloatField(
        default=0.0,
        db_default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served traces that are gold questions (0 to 1).",
    )
    screening_questions = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Gold questions a new annotator answers before regular work (0: no screening).",
    )
    screening_accuracy = models.FloatField(
        default=0.8,
        db_default=0.8,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Gold accuracy needed to pass screening (0 to 1).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="projects"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    # What a member may do and see: every page and endpoint asks these, nothing else
    # looks at ``role``. Methods (not properties) so views can pass them around as
    # rules (``get_membership(..., allow=Membership.may_review)``); templates call them.

    def may_manage(self) -> bool:
        """Owners: project settings, members, imports."""
        return self.role == Role.OWNER

    def may_review(self) -> bool:
        """Owners and reviewers: review, adjudication, gold questions, agreement, exports."""
        return self.role in (Role.OWNER, Role.REVIEWER)

    def sees_all_labels(self) -> bool:
        """Annotators work blind: they see only their own labels."""
        return self.may_review()

    def sees_reference_answer(self) -> bool:
        """Annotators see the reference answer only where the project shows it to them."""
        return self.project.show_reference_answer or self.may_review()

    def sees_model_scores(self) -> bool:
        """Annotators label blind to the PRMs' scores unless the project shows them."""
        return self.project.show_model_scores or self.may_review()

    def may_run_worker_jobs(self) -> bool:
        """Owners who are also staff start Monte-Carlo and training runs: the completer
        and the base model name what URL the workers call and what weights they load,
        which, like registering a scorer, is a decision about what the workers run."""
        return self.may_manage() and self.user.is_staff


def text_hash(text: str) -> str:
    """Problems are identified by their text within a project, so best-of-N files and
    benchmark files over the same problems share one Problem row."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


class Problem(models.Model):
    # Indexed by problem_unique_text, which leads with it.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="problems", db_index=False
    )
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    reference_answer = models.TextField(blank=True)
    reference_solution = models.TextField(blank=True)
    source = models.CharField(max_length=64, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "text_hash"], name="problem_unique_text")
        ]

    def __str__(self) -> str:
        return self.text[:80]


def _step_texts(trace_ids: list[int]) -> dict[int, list[str]]:
    """``{trace id: step texts in order}`` in one query: the one place steps are read."""
    texts: dict[int, list[str]] = defaultdict(list)
    for trace_id, text in (
        Step.objects.filter(trace_id__in=trace_ids)
        .order_by("trace_id", "index")
        .values_list("trace_id", "text")
    ):
        texts[trace_id].append(text)
    return texts


# The generator of the reference traces (scoring/formats/gsm8k.py's): a GSM8K reference
# solution ends in the reference answer, so it is hidden wherever the answer is.
REFERENCE_GENERATOR = "reference"
LABELLED_CHOICES = ("yes", "no")


class TraceQuerySet(models.QuerySet):
    def visible_to(self, membership: Membership) -> TraceQuerySet:
        """The traces the member may see: all but the reference traces of a project that
        hides its reference answers from the member (``annotator/hiding.py``)."""
        if membership.sees_reference_answer():
            return self
        return self.exclude(generator=REFERENCE_GENERATOR)

    def labelled(self, by: Membership | None = None) -> TraceQuerySet:
        """Traces with a label; with ``by``, a label that member may see (a blind
        annotator's own), so the filter tells them nothing about others' labels."""
        return self.filter(Exists(self._labels_of(by)))

    def unlabelled(self, by: Membership | None = None) -> TraceQuerySet:
        return self.exclude(Exists(self._labels_of(by)))

    @staticmethod
    def _labels_of(by: Membership | None) -> AnnotationQuerySet:
        labels = Annotation.objects.filter(trace=OuterRef("pk"))
        return labels.visible_to(by) if by is not None else labels

    def selected(
        self,
        *,
        split: str = "",
        generator: str = "",
        source: str = "",
        labelled: str = "",
        ids: Iterable[int] | None = None,
        seen_by: Membership | None = None,
    ) -> TraceQuerySet:
        """The traces of one split, generator and source (an empty value: any), labelled
        (``"yes"``) or not (``"no"``) as far as ``seen_by`` may see labels (everyone's
        without it), and with ``ids`` only those. ``annotator/filters.py`` parses these
        from a request; a run's selection (``jobs.clean_selection``) holds them too.

        >>> Trace.objects.filter(project=p).visible_to(m).selected(split="test", seen_by=m)
        """
        traces = self
        for field, value in (("split", split), ("generator", generator), ("source", source)):
            if value:
                traces = traces.filter(**{field: value})
        if labelled == "yes":
            traces = traces.labelled(seen_by)
        elif labelled == "no":
            traces = traces.unlabelled(seen_by)
        if ids is not None:
            traces = traces.filter(pk__in=ids)
        return traces

    def facets(self, *fields: str) -> dict[str, list[str]]:
        """The distinct values of each of ``fields`` (default split and generator), for
        the filter menus, as ``{"splits": [...], "generators": [...]}``. Ask it of
        ``visible_to(member)``, so a hidden generator is not offered."""
        return {
            f"{field}s": list(self.order_by(field).values_list(field, flat=True).distinct())
            for field in fields or ("split", "generator")
        }

    def chunks(
        self,
        size: int,
        read: Callable[[TraceQuerySet], list[T]] = list,
        by: tuple[str, ...] = ("id",),
    ) -> Iterator[list[T]]:
        """The traces in ``by`` order (ending in the unique ``id``), ``size`` at a
        time, each chunk as ``read`` returns it (rows with the ``by`` attributes),
        keyset-paginated on ``by``: one query a chunk (plus ``read``'s own), memory flat
        however many traces match.

        >>> for chunk in traces.chunks(500, read=read_with_steps, by=("num_steps", "id")): ...
        """
        traces = self.order_by(*by)
        last: tuple | None = None
        while True:
            after = traces if last is None else traces.filter(_after(by, last))
            # The chunk's ids first: with stale statistics (after an import) the planner
            # would otherwise fetch every later row, with its joins, to sort and cut
            # (which made an export quadratic in its size).
            chunk = read(traces.filter(id__in=after.values("id")[:size]))
            if not chunk:
                return
            yield chunk
            if len(chunk) < size:
                return  # a short chunk is the last one: no query for an empty one
            last = tuple(getattr(chunk[-1], field) for field in by)

    def with_steps(self, chunk_size: int = 2000) -> Iterator[Trace]:
        """The traces in id order, each with ``step_texts`` filled in, read ``chunk_size``
        at a time: two queries a chunk (the traces, then their steps), plus one per
        ``prefetch_related`` lookup. Memory stays flat however many traces match, and
        the query count grows with chunks, not traces.

        >>> for trace in Trace.objects.filter(project=project).with_steps(): ...
        """
        for chunk in self.chunks(chunk_size, read=read_with_steps):
            yield from chunk


def _after(fields: tuple[str, ...], values: tuple) -> Q:
    """Rows after ``values`` in ``fields`` order: ``(a, b) > (x, y)`` is ``a > x`` or
    ``a = x and b > y``.

    >>> _after(("num_steps", "id"), (3, 40))
    <Q: (OR: ('num_steps__gt', 3), (AND: ('num_steps', 3), ('id__gt', 40)))>
    """
    after = Q()
    for i, field in enumerate(fields):
        after |= Q(*zip(fields[:i], values[:i], strict=True), (f"{field}__gt", values[i]))
    return after


def read_with_steps(traces: TraceQuerySet) -> list[Trace]:
    """``traces`` as a list, each with ``step_texts`` filled in: two queries."""
    chunk = list(traces)
    texts = _step_texts([trace.id for trace in chunk])
    for trace in chunk:
        trace.step_texts = texts[trace.id]
    return chunk


class Trace(models.Model):
    """One model solution of a problem, split into steps."""

    # No single-column indexes on the keys: the indexes below lead with them, and each
    # index more is work for every row of a million-step import.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="traces", db_index=False
    )
    problem = models.ForeignKey(
        Problem, on_delete=models.CASCADE, related_name="traces", db_index=False
    )
    source = models.CharField(
        max_length=64,
        help_text="Where the trace came from; with external_id it identifies the trace.",
    )
    source_format = models.CharField(max_length=32)
    external_id = models.CharField(max_length=200)
    generator = models.CharField(max_length=200, blank=True)
    split = models.CharField(max_length=64, blank=True)
    final_answer = models.TextField(blank=True)
    final_answer_correct = models.BooleanField(null=True)
    metadata = models.JSONField(default=dict, blank=True)
    num_steps = models.PositiveIntegerField()
    is_gold = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Denormalised for the queue (annotator/queue.py). label_count: the people whose latest
    # label given here (``labelling.submit_label``) counts toward the overlap
    # (``labelling.counts_toward_overlap``: a verdict or a flag other than "gave up");
    # imported labels, reviews and adjudications do not count. Its db default is for
    # imports, which COPY trace rows without it. queue_rank: the trace's place in the
    # project's queue order (annotator/ranking.py).
    label_count = models.PositiveIntegerField(default=0, db_default=0)
    queue_rank = models.BigIntegerField(null=True, blank=True)

    objects = TraceQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "source", "external_id"], name="trace_unique_source_id"
            )
        ]
        indexes = [
            # The project key's index, and a project's traces in id order a chunk at a
            # time (exports, Trace.objects.with_steps) without reading the whole project.
            models.Index(fields=["project", "id"], name="trace_project_id"),
            models.Index(fields=["project", "split", "id"], name="trace_project_split"),
            models.Index(fields=["project", "generator", "id"], name="trace_project_generator"),
            models.Index(fields=["problem"], name="trace_problem"),
            models.Index(
                fields=["project", "-label_count", "queue_rank", "id"],
                name="trace_queue",
                condition=Q(is_gold=False),
            ),
            models.Index(
                fields=["project"], name="trace_unranked", condition=Q(queue_rank__isnull=True)
            ),
            models.Index(
                fields=["project", "queue_rank", "id"],
                name="trace_gold_queue",
                condition=Q(is_gold=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"

    @cached_property
    def step_texts(self) -> list[str]:
        """The step texts in order. ``Trace.objects.with_steps()`` fills this in for a
        chunk of traces at once; a trace loaded on its own reads it here, in one query."""
        return _step_texts([self.pk])[self.pk]


class Step(models.Model):
    """One step of a trace. A million-step import writes a million of these, so each
    is as small as the store allows: the primary key is ``(trace, index)`` (one index,
    no surrogate id), and there is no foreign-key constraint in the database, whose
    check of every row at commit cost the import a fifth of its time. Integrity holds
    anyway: steps are written only by the importer, in the transaction that writes
    their trace, and deleting a trace deletes them through Django's cascade."""

    pk = models.CompositePrimaryKey("trace_id", "index")
    trace = models.ForeignKey(
        Trace, on_delete=models.CASCADE, related_name="steps", db_index=False, db_constraint=False
    )
    index = models.PositiveIntegerField(help_text="0-based position in the trace.")
    text = models.TextField()

    class Meta:
        ordering = ["trace", "index"]

    def __str__(self) -> str:
        return f"step {self.index} of trace {self.trace_id}"


# Imported labels are recorded under an ``import-<format>`` user (``importing.importer_user``):
# not labelling work done here, but a verdict all the same.
IMPORTER_PREFIX = "import-"


class AnnotationKind(models.TextChoices):
    LABEL = "label", "Annotator label"
    ADJUDICATION = "adjudication", "Adjudicated label"
    GOLD = "gold", "Gold reference label"


class _LatestAnnotation(NamedTuple):
    """The fields of an annotation that ``Verdict.resolve`` reads, as a plain tuple:
    building model instances cost an export more than resolving the verdicts."""

    id: int
    kind: str
    first_error_step: int | None
    step_ratings: list | None


class AnnotationQuerySet(models.QuerySet):
    # ``latest_versions``, not ``latest``: QuerySet.latest() is Django's (newest row by a
    # field), and shadowing it would surprise.
    def latest_versions(self) -> AnnotationQuerySet:
        """Each author's current label of each trace (earlier versions are kept)."""
        return self.filter(is_latest=True)

    def labels(self) -> AnnotationQuerySet:
        """Annotators' labels, not reviewers' adjudications or gold labels."""
        return self.filter(kind=AnnotationKind.LABEL)

    def by(self, user) -> AnnotationQuerySet:
        """Written by ``user`` (imported labels are written by an ``import-*`` user)."""
        return self.filter(annotator=user)

    def latest_label_by(self, user) -> AnnotationQuerySet:
        """The user's current label of each trace they labelled."""
        return self.latest_versions().labels().by(user)

    def visible_to(self, membership: Membership) -> AnnotationQuerySet:
        """The annotations the member may see: all, or (annotators work blind) their own."""
        if membership.sees_all_labels():
            return self
        return self.by(membership.user_id)

    def counts_by_trace(self) -> dict[int, int]:
        """``{trace id: how many of these annotations}``, for traces with one or more."""
        return dict(
            self.order_by().values("trace_id").annotate(n=Count("id")).values_list("trace_id", "n")
        )

    def verdicts(
        self, *, reviewed_only: bool = False, chunk_size: int = 5000
    ) -> dict[int, Verdict]:
        """``{trace id: Verdict}`` of every trace these annotations label (their latest
        versions), read ``chunk_size`` rows at a time; ``Verdict.resolve`` decides each,
        so every page, export and figure labels a trace alike. Traces without a latest
        annotation are absent: ``verdicts.get(trace_id, Verdict())``."""
        latest: dict[int, list[_LatestAnnotation]] = defaultdict(list)
        # JSON read as text and decoded with orjson: Django's JSONField decodes with
        # json, a tenth of an export's time.
        rows = (
            self.latest_versions()
            .annotate(ratings_text=Cast("step_ratings", models.TextField()))
            .order_by()
            .values_list("trace_id", "id", "kind", "first_error_step", "ratings_text")
        )
        for trace_id, pk, kind, first_error, ratings in rows.iterator(chunk_size=chunk_size):
            ratings = None if ratings is None else orjson.loads(ratings)
            latest[trace_id].append(_LatestAnnotation(pk, kind, first_error, ratings))
        return {
            trace_id: Verdict.resolve(of_trace, reviewed_only=reviewed_only)  # type: ignore[arg-type]
            for trace_id, of_trace in latest.items()
        }


class Annotation(models.Model):
    """One submitted label of a trace. Rows are never edited: see the module docstring."""

    # Indexed by annotation_trace_kind and annotation_annotator_time, which lead with them.
    trace = models.ForeignKey(
        Trace, on_delete=models.CASCADE, related_name="annotations", db_index=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="annotations",
        db_index=False,
    )
    # Labeller id carried over from an imported dataset (PRM800K's ``labeler``); blank otherwise.
    external_annotator = models.CharField(max_length=100, blank=True)
    kind = models.CharField(
        max_length=20, choices=AnnotationKind.choices, default=AnnotationKind.LABEL
    )
    first_error_step = models.IntegerField(
        null=True, blank=True, help_text="0-based index of the first wrong step; -1 = all correct."
    )
    # One entry per step: -1, 0 or +1, or None where the step was not judged.
    step_ratings = models.JSONField(null=True, blank=True)
    bad_problem = models.BooleanField(default=False)
    gave_up = models.BooleanField(default=False)
    bad_step_split = models.BooleanField(default=False)
    flag_reason = models.TextField(blank=True)
    note = models.TextField(blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    is_latest = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AnnotationQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trace", "annotator", "external_annotator", "kind"],
                condition=Q(is_latest=True),
                name="annotation_one_latest",
            ),
            models.CheckConstraint(
                condition=Q(first_error_step__isnull=True) | Q(first_error_step__gte=-1),
                name="annotation_first_error_range",
            ),
        ]
        indexes = [
            models.Index(fields=["trace", "kind"], name="annotation_trace_kind"),
            models.Index(fields=["annotator", "created_at"], name="annotation_annotator_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} of trace {self.trace_id} by {self.annotator_id}"

    @property
    def rater_name(self) -> str:
        """How the author is shown; needs ``annotator`` (``select_related`` it)."""
        return rater_name(self.annotator.username, self.external_annotator)

    def ratings_by_step(self, num_steps: int) -> list[int | None]:
        return pad_ratings(self.step_ratings, num_steps)


def rater_name(username: str, external_annotator: str = "") -> str:
    """An annotation's author as pages and agreement figures show it: the user, or for
    a label imported with its labeller's id, both (``import-prm800k:<labeller>``)."""
    return f"{username}:{external_annotator}" if external_annotator else username


def pad_ratings(ratings: list[int | None] | None, num_steps: int) -> list[int | None]:
    """One rating (or ``None``, not judged) per step: cut or padded to ``num_steps``.

    >>> pad_ratings([1, -1], 4)
    [1, -1, None, None]
    """
    return (list(ratings or []) + [None] * num_steps)[:num_steps]


@dataclass(frozen=True)
class Verdict:
    """The label a trace counts with in exports and review.

    A reviewer's verdict wins (the newest adjudication, else the gold label of a gold
    question); otherwise the annotators' latest labels decide when they agree on the
    first error, the earliest of them giving the ratings. ``first_error_step`` is
    ``None`` when there is no verdict: nobody labelled the trace with one (``kind`` is
    ``None``) or its annotators disagree (``disagreement``).
    """

    first_error_step: int | None = None
    step_ratings: list[int | None] | None = None
    kind: str | None = None  # the AnnotationKind that decided it
    disagreement: bool = False

    @property
    def is_labelled(self) -> bool:
        return self.first_error_step is not None

    @classmethod
    def resolve(cls, annotations: Iterable[Annotation], *, reviewed_only: bool = False) -> Verdict:
        """The verdict of one trace from its latest annotations (``is_latest``); with
        ``reviewed_only`` only a reviewer's verdict counts."""
        # One pass (an export resolves every trace): the newest adjudication and gold
        # label, and the earliest vote, noting whether the votes disagree.
        adjudication = gold = first = None
        disagree = False
        for a in annotations:
            if a.first_error_step is None:
                continue
            if a.kind == AnnotationKind.LABEL:
                if first is None:
                    first = a
                else:
                    disagree = disagree or a.first_error_step != first.first_error_step
                    first = a if a.id < first.id else first
            elif a.kind == AnnotationKind.ADJUDICATION:
                adjudication = a if adjudication is None or a.id > adjudication.id else adjudication
            elif a.kind == AnnotationKind.GOLD:
                gold = a if gold is None or a.id > gold.id else gold
        if adjudication is not None:
            return cls(
                adjudication.first_error_step,
                adjudication.step_ratings,
                AnnotationKind.ADJUDICATION,
            )
        if gold is not None:
            return cls(gold.first_error_step, gold.step_ratings, AnnotationKind.GOLD)
        if reviewed_only or first is None:
            return cls()
        if disagree:
            return cls(kind=AnnotationKind.LABEL, disagreement=True)
        return cls(first.first_error_step, first.step_ratings, AnnotationKind.LABEL)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """What every background job kind shares: imports, scoring, Monte-Carlo and
    training runs. The row, not Celery's result backend, is the job's truth.

    A worker claims a job with a conditional update (``annotator/jobs.py``) that takes
    a queued job, or a running one whose ``heartbeat_at`` has gone stale because its
    worker died. ``attempts`` counts claims and doubles as the claim token: a worker
    that finds ``attempts`` changed under it has lost the job and stops. Cancel is a
    flag the worker reads between chunks; a queued job is cancelled at once. The
    sweeper sends a queued job again when its message may have been lost.

    A job kind is a subclass naming the Celery task that runs it (``task_name``, the
    explicit name its line in ``annotator/tasks.py`` declares) and saying whether a job
    taken up again continues where it stopped (``resumable``) or starts over. The
    sweeper finds every subclass (``jobs.job_models``).
    """

    task_name: str = ""
    resumable: bool = False

    # None: started from the command line.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    queue = models.CharField(max_length=64, default="default")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that ran it last.")
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # The last frames of an unexpected error's traceback, for whoever runs the workers.
    error_detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When it was last sent to the broker (created, retried, or taken up again).
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What the work returned (counts, metrics), stored when it is done.
    summary = models.JSONField(default=dict, blank=True)

    # A queued job nobody has taken after this long gets a "waiting for a worker" note
    # telling the user how to start one.
    WAITING_NOTE_SECONDS = 5

    class Meta:
        abstract = True
        ordering = ["-id"]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_active(self) -> bool:
        return not self.is_finished

    @property
    def can_cancel(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not self.cancel_requested

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def progress_percent(self) -> float | None:
        if not self.progress_total:
            return None
        return min(100.0, 100.0 * self.progress_done / self.progress_total)

    def release_resources(self) -> None:
        """Free what only this job needs (an upload) once it cannot run again."""

    def missing_for_retry(self) -> str:
        """Why a retry cannot work (empty when it can)."""
        return ""

    @property
    def seconds_waiting(self) -> float:
        """How long a queued job has waited for a worker (0 once one took it)."""
        if self.status != JobStatus.QUEUED or self.queued_at is None:
            return 0.0
        return (timezone.now() - self.queued_at).total_seconds()

    @property
    def waiting_for_worker(self) -> bool:
        """Queued for long enough that no worker is likely to be listening."""
        return self.seconds_waiting > self.WAITING_NOTE_SECONDS


class ProjectRun(Job):
    """A named run over a project's traces (scoring, Monte-Carlo, training): resumable
    chunk by chunk, its name unique in the project. Each kind declares ``project``
    itself (the reverse names differ) and its own unique-name constraint."""

    resumable = True
    # What its work goes through one by one, and its shards slice by id
    # (``annotator/shards.py``).
    shard_unit = "traces"

    name = models.SlugField(max_length=100)
    # A run split into shards that several workers take (``annotator/shards.py``); none
    # for a run worked as one job. Deleting the run deletes them.
    shards = GenericRelation("Shard", object_id_field="run_id")

    class Meta(Job.Meta):
        abstract = True

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate of this attempt so far (the work records where the
        attempt started as ``summary["resumed_at"]``)."""
        if self.status != JobStatus.RUNNING or not self.progress_total or not self.started_at:
            return None
        done_this_attempt = self.progress_done - self.summary.get("resumed_at", 0)
        if done_this_attempt <= 0:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return elapsed / done_this_attempt * (self.progress_total - self.progress_done)


class Shard(models.Model):
    """One slice of a run's items, worked by whichever worker claims it
    (``annotator/shards.py``): the items of the run (traces of its selection; problems
    for sampling and grounded runs, sampled solutions for verification runs: the kind's
    ``shard_unit``) whose ids lie in ``[first_trace_id, last_trace_id]``, about
    ``traces`` of them, planned when the run was created. A shard follows the job rules of ``models.Job``: claimed with ``SKIP
    LOCKED``, heartbeating, ``attempts`` as its claim token, taken up again when its
    heartbeat goes stale. The run it belongs to is any ``ProjectRun`` kind, named by
    content type and id; the run keeps the status, the cancel flag and the totals."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+")
    run_id = models.BigIntegerField()
    run = GenericForeignKey("content_type", "run_id")
    index = models.PositiveIntegerField()
    first_trace_id = models.BigIntegerField()
    last_trace_id = models.BigIntegerField()
    traces = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # Traces of the shard stored so far (the work's progress, written by the heartbeat).
    done = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that took it last.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "run_id", "index"], name="shard_unique_index"
            )
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="shard_status"),
            # The shards a claim may take, in order: a large run's done ones never read.
            models.Index(
                fields=["content_type", "run_id", "index"],
                name="shard_claimable",
                condition=Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]),
            ),
        ]

    def __str__(self) -> str:
        return f"shard {self.index} of run {self.run_id} ({self.status})"


class UploadJob(Job):
    """A job whose input is an uploaded file (trace and score-file imports). The upload
    lives in Django's default storage under ``upload``, so a worker on another machine
    reads it through a shared volume or object storage; it is deleted once the job
    cannot run again."""

    file_name = models.CharField(max_length=255)
    upload = models.CharField(max_length=500, help_text="Storage name of the uploaded file.")

    class Meta(Job.Meta):
        abstract = True

    @staticmethod
    def keep(upload: UploadedFile) -> dict[str, str]:
        """Save ``upload`` to storage under a name of its own; the fields of the job
        that reads it (``file_name``, ``upload``)."""
        from django.core.files.storage import default_storage

        name = Path(upload.name or "upload").name
        return {
            "file_name": name,
            "upload": default_storage.save(f"uploads/{uuid.uuid4().hex}-{name}", upload),
        }

    def release_resources(self) -> None:
        from django.core.files.storage import default_storage

        if self.upload:
            default_storage.delete(self.upload)

    def missing_for_retry(self) -> str:
        from django.core.files.storage import default_storage

        if not self.upload or not default_storage.exists(self.upload):
            return "The uploaded file is gone; upload it again."
        return ""


class ImportJob(UploadJob):
    """An import started from the UI or the API; a Celery worker runs it. Imports are
    all-or-nothing (one transaction), so one taken up again after a dead worker starts
    over."""

    task_name = "annotator.tasks.run_import"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    format = models.CharField(max_length=32, default="auto")
    options = models.JSONField(default=dict, blank=True)

    class Meta(UploadJob.Meta):
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="importjob_status")]

    def __str__(self) -> str:
        return f"import {self.file_name} into {self.project} ({self.status})"


class Assignment(models.Model):
    """A trace served to an annotator: held (``expires_at`` in the future) until they
    submit, or skipped (never served to them again). Expired holds are simply ignored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    skipped = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trace", "annotator"], name="assignment_unique")
        ]
        indexes = [
            models.Index(fields=["annotator", "project", "expires_at"], name="assignment_holder")
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id} for {self.annotator_id}"


class ReviewDecision(models.TextChoices):
    ACCEPT = "accept", "Accepted"
    REJECT = "reject", "Rejected"
    SEND_BACK = "send_back", "Sent back"


class Review(models.Model):
    """A reviewer's decision on one annotation version: accept, reject, or send back to
    its annotator with a comment. A new version by the annotator supersedes it."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    decision = models.CharField(max_length=20, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.decision} of annotation {self.annotation_id}"


class RealField(models.FloatField):
    """A 4-byte float (PostgreSQL ``real``): half the size of Django's ``FloatField``,
    and more precision than any PRM score carries. NaN stays NaN both ways: SQLite
    would store a NaN as NULL (which a ``NOT NULL`` column refuses, and which reads
    back as a missing value), so there it is kept as the text ``NaN``, which a
    ``real`` column holds as text and sorts above every number, as PostgreSQL sorts
    NaN."""

    def db_type(self, connection) -> str:
        return "real"

    def get_db_prep_value(self, value, connection, prepared=False):
        value = super().get_db_prep_value(value, connection, prepared)
        if isinstance(value, float) and math.isnan(value) and not database.has_nan(connection):
            return "NaN"
        return value

    def get_db_converters(self, connection) -> list:
        # Only where NaN is stored as text: on PostgreSQL a converter would be a Python
        # call per value read (millions in an export with scores).
        converters = super().get_db_converters(connection)
        if database.has_nan(connection):
            return converters
        return [*converters, _nan_from_text]


def _nan_from_text(value, expression, connection):
    return math.nan if value == "NaN" else value


class RealArrayField(models.Field):
    """A list of floats: a ``real[]`` on PostgreSQL, JSON text elsewhere (the SQLite
    demo stores it but has no dashboard that reads it). NaN stays NaN both ways."""

    def db_type(self, connection) -> str:
        return "real[]" if database.has_arrays(connection) else "text"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None or database.has_arrays(connection):
            return value
        return json.dumps([float(v) for v in value])

    def from_db_value(self, value, expression, connection):
        if value is None or database.has_arrays(connection):
            return value
        return json.loads(value)


class ScorerQuerySet(models.QuerySet):
    def usable_in(self, project: Project) -> ScorerQuerySet:
        """The scorers a run of ``project`` may use: the site-wide ones and the
        project's own (trained on its labels)."""
        return self.filter(Q(project__isnull=True) | Q(project=project))

    def visible_to(self, user) -> ScorerQuerySet:
        """The scorers ``user`` may see: staff see every one; others the site-wide ones
        and those of the projects they are members of."""
        if user.is_staff:
            return self
        return self.filter(
            Q(project__isnull=True)
            | Q(project__in=Membership.objects.filter(user=user).values("project"))
        )


class Scorer(models.Model):
    """A registered PRM (or the model-free arithmetic check): which ``scoring`` adapter
    runs which model, with which options. Site-wide scorers (no ``project``) are
    registered by staff, since a scorer decides what code and weights a GPU worker
    loads; a training run registers its model as a scorer of its own project, which
    other projects neither see nor use (it was trained on that project's labels)."""

    name = models.SlugField(max_length=100, unique=True)
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="scorers",
        null=True,
        blank=True,
        help_text="The project whose training run made it; empty: site-wide.",
    )
    adapter = models.CharField(max_length=64)
    model = models.CharField(
        max_length=500, blank=True, help_text="Hub id or path on the workers' disk."
    )
    revision = models.CharField(max_length=100, blank=True, help_text="Hub revision (optional).")
    # threshold, device, dtype, batch_tokens, and the adapter's own options.
    options = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScorerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def is_usable_in(self, project: Project) -> bool:
        """The rule of ``Scorer.objects.usable_in`` for one scorer."""
        return self.project_id is None or self.project_id == project.pk

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from annotator.scorers import validate_scorer

        errors = validate_scorer(self.adapter, self.model, self.options)
        if errors:
            raise ValidationError(errors)

    @property
    def threshold(self) -> float:
        return float(self.options.get("threshold", 0.5))

    @property
    def queue(self) -> str:
        """GPU work goes to the ``gpu`` queue; a scorer that says ``device=cpu``, scores
        on a vLLM server (``backend=vllm``: the worker only tokenizes) or needs no model
        runs on any ``default`` worker."""
        from scoring.adapters import needs_model

        if (
            not needs_model(self.adapter)
            or self.options.get("device") == "cpu"
            or self.options.get("backend") == "vllm"
        ):
            return "default"
        return "gpu"


class RunSource(models.TextChoices):
    SCORER = "scorer", "Scored by a worker"
    IMPORTED = "imported", "Imported from a file"


class ScoringRun(ProjectRun):
    """A scorer over a selection of a project's traces (or scores imported from a
    file). Resumable: the scores of each chunk are committed together with their
    ``TraceScore`` rows, so a run taken up again skips the traces it already stored."""

    task_name = "annotator.tasks.run_scoring"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scoring_runs")
    scorer = models.ForeignKey(
        Scorer, on_delete=models.PROTECT, related_name="runs", null=True, blank=True
    )
    source = models.CharField(max_length=20, choices=RunSource.choices, default=RunSource.SCORER)
    # split, generator, source, labelled ("yes"/"no"), ids: which traces it scores.
    selection = models.JSONField(default=dict, blank=True)
    # What produced the scores, frozen at the start: adapter, model, revision, options,
    # and for imports the file name.
    provenance = models.JSONField(default=dict, blank=True)
    threshold = models.FloatField(default=0.5)
    tokens = models.PositiveBigIntegerField(default=0)
    scoring_seconds = models.FloatField(default=0.0)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="scoringrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="scoringrun_status")]

    def __str__(self) -> str:
        return f"run {self.name} in {self.project} ({self.status})"

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.scoring_seconds if self.scoring_seconds > 0 else None


class ScoreImportJob(UploadJob):
    """A score file imported as a run on a worker (``runs.run_score_import_job``), as
    trace imports are. All or nothing: one taken up again after a dead worker starts
    over, unless it stored its run (``run``, set in the run's own transaction)."""

    task_name = "annotator.tasks.run_score_import"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="score_import_jobs")
    name = models.SlugField(max_length=100, help_text="The name of the run it makes.")
    run = models.OneToOneField(
        ScoringRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="import_job",
    )

    class Meta(UploadJob.Meta):
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="scoreimportjob_status")]

    def __str__(self) -> str:
        return f"score import {self.file_name} into {self.project} ({self.status})"


class TraceScore(models.Model):
    """One trace's result in a run: the marker that it is stored (a resumed run skips
    it), the figures dashboards sort and filter on without touching every step, and
    the adapter's per-trace extras (critic samples and votes, the failing arithmetic
    claims, implicit-PRM raw q values)."""

    # (run, trace) is unique, which indexes the run; the trace gets its own index.
    run = models.ForeignKey(
        ScoringRun, on_delete=models.CASCADE, related_name="trace_scores", db_index=False
    )
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="trace_scores")
    min_score = RealField(null=True)
    last_score = RealField(null=True)
    # Best-of-N's other aggregates over the finite step scores, so the dashboard reads one
    # row per trace: the mean, and the product as a sum of logs (-inf when a step scores
    # 0, NaN when no step is finite), both in double precision as best-of-N compares them
    # at ``scoring.metrics.AGGREGATE_DIGITS`` digits. Null: unknown (rows stored before
    # these columns, or a negative score, whose sign a log cannot carry); the dashboard
    # then aggregates that trace's steps.
    mean_score = models.FloatField(null=True)
    log_product = models.FloatField(null=True)
    # The first step scored below the run's threshold; -1: none is (all correct).
    predicted_first_error = models.IntegerField(null=True)
    # Every step's score in step order (NaN: no verdict), beside the StepScore rows: the
    # dashboard's figures read one narrow row per labelled trace instead of probing ten
    # step rows each. Null on rows stored before this column; the dashboard then reads
    # that trace's StepScore rows.
    step_scores = RealArrayField(null=True)
    n_tokens = models.PositiveIntegerField(default=0)
    extras = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "trace"], name="tracescore_unique_trace")
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id} in run {self.run_id}"


class StepScore(models.Model):
    """One step's score in one run: millions of rows per run, so each is as small as
    PostgreSQL allows: no surrogate id, a composite primary key ``(run, trace,
    step_index)`` that is also the one index (a run's steps in trace order; one
    trace's steps under the project's runs), and a 4-byte ``real`` score. NaN marks a
    step the scorer gave no verdict on. Rows are written by ``COPY`` after deleting
    the chunk's traces in the same transaction, so a repeated chunk replaces itself."""

    pk = models.CompositePrimaryKey("run_id", "trace_id", "step_index")
    # No foreign-key constraints in the database: checking two of them per row at commit
    # made storing scores 30x slower than the COPY itself. Integrity holds anyway: rows
    # are written only beside their TraceScore (which has the constraints) in one
    # transaction, and deleting a run or a trace deletes them through Django's cascade.
    run = models.ForeignKey(
        ScoringRun, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    trace = models.ForeignKey(
        Trace,
        on_delete=models.CASCADE,
        related_name="step_scores",
        db_index=False,
        db_constraint=False,
    )
    step_index = models.PositiveIntegerField()
    score = RealField()

    def __str__(self) -> str:
        return f"step {self.step_index} of trace {self.trace_id} in run {self.run_id}: {self.score}"


# -- Monte-Carlo labelling and label sets (issue 10) ----------------------------------------


class MCMode(models.TextChoices):
    EXHAUSTIVE = "exhaustive", "Every step (Math-Shepherd)"
    BINARY = "binary", "Binary search for the first error (OmegaPRM)"


class MonteCarloRun(ProjectRun):
    """Monte-Carlo step labels over a selection of a project's traces that have a
    reference answer (``scoring.montecarlo``). Resumable per trace: each trace's values
    and kept rollouts are committed together, so a run taken up again after a dead
    worker skips the traces it stored and never stores a rollout twice."""

    task_name = "annotator.tasks.run_montecarlo"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mc_runs")
    # "openai:BASE_URL" (a server; runs on the default queue) or "hf:PATH" (gpu queue).
    completer = models.CharField(max_length=500)
    model = models.CharField(max_length=500, blank=True, help_text="The served model's name.")
    mode = models.CharField(max_length=20, choices=MCMode.choices, default=MCMode.EXHAUSTIVE)
    n = models.PositiveSmallIntegerField(default=8, help_text="Rollouts per prefix.")
    # Sampling (temperature, top_p, max_tokens, seed, stop), the completer's own options
    # (chat, max_in_flight, timeout_s, retries, device) and ``template``.
    options = models.JSONField(default=dict, blank=True)
    selection = models.JSONField(default=dict, blank=True)
    keep_rollouts = models.BooleanField(default=False)
    rollouts = models.PositiveBigIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="mcrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="mcrun_status")]

    def __str__(self) -> str:
        return f"Monte-Carlo run {self.name} in {self.project} ({self.status})"


class TraceMC(models.Model):
    """One trace's Monte-Carlo values in a run (lists by step; null where binary search
    did not evaluate a step); its presence marks the trace done."""

    run = models.ForeignKey(
        MonteCarloRun, on_delete=models.CASCADE, related_name="trace_values", db_index=False
    )
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="mc_values")
    mc = models.JSONField(default=list)
    hard = models.JSONField(default=list)
    progress = models.JSONField(default=list)
    problem_value = models.FloatField(null=True)
    first_error = models.IntegerField()
    rollouts = models.PositiveIntegerField(default=0)
    tokens = models.PositiveIntegerField(default=0)
    step_rollouts = models.JSONField(default=list)
    step_tokens = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "trace"], name="tracemc_unique")]

    def __str__(self) -> str:
        return f"trace {self.trace_id} in Monte-Carlo run {self.run_id}"


class MCRollout(models.Model):
    """A kept rollout: the completion from one prefix (step -1: the problem alone)."""

    run = models.ForeignKey(MonteCarloRun, on_delete=models.CASCADE, related_name="+")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="+", db_index=False)
    step_index = models.IntegerField()
    sample = models.PositiveSmallIntegerField()
    text = models.TextField()
    answer = models.TextField(blank=True)
    correct = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "trace", "step_index", "sample"], name="mcrollout_unique"
            )
        ]

    def __str__(self) -> str:
        return f"rollout {self.sample} of step {self.step_index} of trace {self.trace_id}"


class GroundedSelection(models.TextChoices):
    UCT = "uct", "UCT (getBestChild, c = 1.8)"
    RELEASED = "released", "The released select(): a random child of the root"


class GroundedRun(ProjectRun):
    """GroundedPRM's tree search (``scoring.grounded.search``) for each problem of the
    selected traces that has a reference answer. Resumable per problem and per round: each
    problem's search state (``GroundedTree.state``) is saved after every round, so a run
    taken up again after a dead worker skips the finished problems and goes on with the
    unfinished one from its last saved round: every node is stored once."""

    task_name = "annotator.tasks.run_grounded"
    shard_unit = "problems"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grounded_runs")
    # "openai:BASE_URL" (a server; runs on the default queue) or "hf:PATH" (gpu queue).
    generator = models.CharField(max_length=500)
    model = models.CharField(max_length=500, blank=True, help_text="The served generator's name.")
    # "tool": the tool's decision labels each step; else a judge completer spec.
    judge = models.CharField(max_length=500, default="tool")
    judge_model = models.CharField(max_length=500, blank=True)
    search_selection = models.CharField(
        max_length=20, choices=GroundedSelection.choices, default=GroundedSelection.UCT
    )
    seed = models.PositiveBigIntegerField(default=0)
    # The generator's and the judge's completer options (``scoring.options``).
    options = models.JSONField(default=dict, blank=True)
    judge_options = models.JSONField(default=dict, blank=True)
    selection = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="groundedrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="groundedrun_status")]

    def __str__(self) -> str:
        return f"grounded run {self.name} in {self.project} ({self.status})"


class GroundedTree(models.Model):
    """One problem's search in a grounded run: its state (``SearchState.to_dict``: the
    tree with every node's step, tool verdict and transcript, value, visits and rollouts),
    saved after each round; ``done`` once the search stopped."""

    run = models.ForeignKey(
        GroundedRun, on_delete=models.CASCADE, related_name="trees", db_index=False
    )
    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="+")
    state = models.JSONField()
    rounds = models.PositiveIntegerField(default=0)
    nodes = models.PositiveIntegerField(default=0)
    done = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "problem"], name="groundedtree_unique")
        ]

    def __str__(self) -> str:
        return f"problem {self.problem_id} in grounded run {self.run_id}"


class GroundedPath(models.Model):
    """A path of a grounded run's search tree, brought into the project as ``trace``
    (``annotator.grounded_paths``). Lists by step: the node, its value before binarisation,
    the binarised score (+1/-1), the deciding verdict's decision, the tool's verdict and the
    judge's (transcripts, ``ToolVerdict.to_dict``), and whether the value is a fused rollout
    value. ``consistent``: the path passes the released filter, so its labels are training
    labels (a ``grounded`` label set's); ``disagreeing``: the steps whose tool verdict and
    fused value disagree (``scoring.grounded.traces``), counted in ``disagreements`` for the
    queue order."""

    run = models.ForeignKey(
        GroundedRun, on_delete=models.CASCADE, related_name="paths", db_index=False
    )
    trace = models.OneToOneField(Trace, on_delete=models.CASCADE, related_name="grounded_path")
    tree = models.ForeignKey(GroundedTree, on_delete=models.CASCADE, related_name="+")
    nodes = models.JSONField(default=list)
    values = models.JSONField(default=list)
    scores = models.JSONField(default=list)
    decisions = models.JSONField(default=list)
    verdicts = models.JSONField(default=list)
    judgements = models.JSONField(default=list)
    fused = models.JSONField(default=list)
    label = models.CharField(max_length=10)
    consistent = models.BooleanField()
    disagreeing = models.JSONField(default=list)  # step indexes
    disagreements = models.PositiveIntegerField(default=0)  # their number, for the queue

    class Meta:
        indexes = [models.Index(fields=["run", "consistent"], name="groundedpath_run")]

    def __str__(self) -> str:
        return f"trace {self.trace_id} from grounded run {self.run_id}"


class LabelSetSource(models.TextChoices):
    HUMAN = "human", "Human labels (agreed or adjudicated)"
    MC_HARD = "mc-hard", "Monte-Carlo hard labels"
    MC_SOFT = "mc-soft", "Monte-Carlo soft labels at a threshold"
    SCORING = "scoring", "A scoring run at a threshold"
    CONSENSUS = "consensus", "Consensus of two label sets"
    GROUNDED = "grounded", "A grounded run's step labels"


class LabelSet(models.Model):
    """Named per-trace first errors (and per-step labels) taken from one source, frozen
    when made, for exports and training. ``params`` say how (run, threshold, the two
    sets of a consensus); ``summary`` holds the counts (kept, dropped, agreement)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_sets")
    name = models.SlugField(max_length=100)
    source = models.CharField(max_length=20, choices=LabelSetSource.choices)
    params = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="labelset_unique_name")
        ]

    def __str__(self) -> str:
        return f"label set {self.name} in {self.project}"


class LabelSetEntry(models.Model):
    label_set = models.ForeignKey(
        LabelSet, on_delete=models.CASCADE, related_name="entries", db_index=False
    )
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="+")
    first_error_step = models.IntegerField()
    # +1/-1 per step up to the first error where the source gives them (null otherwise).
    step_ratings = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["label_set", "trace"], name="labelsetentry_unique")
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id} in {self.label_set_id}: {self.first_error_step}"


class TrainingRun(ProjectRun):
    """Fine-tuning a PRM on a project's labels (a label set, or the human verdicts) with
    ``scoring.training``; traces of ``eval_split`` are held out for the ProcessBench
    metric. Resumable: the trainer checkpoints under ``output_dir`` every
    ``save_every`` steps, and a run taken up again continues from the newest checkpoint.
    The finished model is registered as ``scorer``, a new scorer of the project (a
    run never replaces one)."""

    task_name = "annotator.tasks.run_training"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=32)  # scoring.training.KINDS
    base_model = models.CharField(max_length=500, help_text="Hub id or path on the workers' disk.")
    # None: the human verdicts (agreed or adjudicated) at the time the run starts.
    label_set = models.ForeignKey(
        LabelSet, on_delete=models.PROTECT, related_name="training_runs", null=True, blank=True
    )
    eval_split = models.CharField(max_length=64, blank=True)
    # scoring.training.TrainConfig fields: lora_r, epochs, lr, batch_tokens, max_steps, ...
    options = models.JSONField(default=dict, blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    scorer = models.ForeignKey(
        Scorer, on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="trainingrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="trainingrun_status")]

    def __str__(self) -> str:
        return f"training run {self.name} in {self.project} ({self.status})"


class TrainingPoint(models.Model):
    """One logged value of a training run (``loss``, ``eval_f1``, ...) at a step; keyed
    by (run, name, step), so a run resumed from a checkpoint overwrites the steps it
    logs again instead of drawing them twice."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="points")
    name = models.CharField(max_length=64)
    step = models.PositiveIntegerField()
    value = models.FloatField(null=True)

    class Meta:
        ordering = ["run", "name", "step"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name", "step"], name="trainingpoint_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.step} = {self.value}"


class SamplingRun(ProjectRun):
    """N solutions per problem from a completer (``scoring.sampling``), stored as traces
    of one generator (``generator``; source ``sampling-<id>``) with their final answers
    graded by the project's grading and their token counts (``SampledSolution``). The
    problems are those of the selected traces that have a reference answer. A run whose
    completer is ``sc-genrm:DIR`` imports the samples files of "When To Solve, When To
    Verify" from DIR instead (``annotator/sampling.py``). Resumable per problem: a
    problem's N solutions are committed together."""

    task_name = "annotator.tasks.run_sampling"
    shard_unit = "problems"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sampling_runs")
    # "openai:BASE_URL", "hf:PATH", or "sc-genrm:DIR" (an import of the reference's layout).
    completer = models.CharField(max_length=500)
    model = models.CharField(max_length=500, blank=True, help_text="The served model's name.")
    generator = models.CharField(max_length=200, help_text="The sampled traces' generator.")
    n = models.PositiveIntegerField(help_text="Solutions per problem.")
    # Every sampling parameter (temperature, top_p, max_tokens, seed, stop), the
    # completer's own options, ``template`` (with {problem}) and ``split`` (steps).
    options = models.JSONField(default=dict, blank=True)
    selection = models.JSONField(default=dict, blank=True)
    solutions = models.PositiveBigIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    # Sampled solutions are for curves, thousands at a time: they stay out of the
    # labelling queue (``annotator/queue.py``) unless the run was started with this set.
    # Any of them can still be opened and labelled from its trace page.
    labelling_queue = models.BooleanField(
        default=False, help_text="Its solutions join the labelling queue."
    )

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="samplingrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="samplingrun_status")]

    def __str__(self) -> str:
        return f"sampling run {self.name} in {self.project} ({self.status})"

    @property
    def source(self) -> str:
        """The ``Trace.source`` of the run's solutions."""
        return f"sampling-{self.pk}"


class SampledSolution(models.Model):
    """Solution ``index`` of a problem in a sampling run: its trace (final answer and
    correctness there) and the tokens it took to generate (0 when not known)."""

    run = models.ForeignKey(SamplingRun, on_delete=models.CASCADE, related_name="sampled")
    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveIntegerField()
    trace = models.OneToOneField(Trace, on_delete=models.CASCADE, related_name="sampled")
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "problem", "index"], name="sampledsolution_unique"
            )
        ]

    def __str__(self) -> str:
        return f"solution {self.index} of problem {self.problem_id} in sampling run {self.run_id}"


class VerifierKind(models.TextChoices):
    GENRM_BASE = "genrm-base", "GenRM-Base (Yes/No verdict, p(yes) from log-probabilities)"
    CRITIC = "processbench-critic", "ProcessBench critic (any error found = incorrect)"


class VerificationRun(ProjectRun):
    """V verifications of each of the first ``per_problem`` solutions of every problem of
    a sampling run (all with 0), by a generative verifier (``scoring.verifiers``), each
    stored with its verdict, p(yes)/p(no) and token count (``SolutionVerification``).
    A completer ``sc-genrm:DIR`` imports the reference's ``problem_i/solution_j.yaml``
    files instead. Resumable per solution: its V verifications are committed together."""

    task_name = "annotator.tasks.run_verification"
    shard_unit = "solutions"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="verification_runs")
    sampling_run = models.ForeignKey(
        SamplingRun, on_delete=models.CASCADE, related_name="verification_runs"
    )
    verifier = models.CharField(max_length=32, choices=VerifierKind.choices)
    completer = models.CharField(max_length=500)
    model = models.CharField(max_length=500, blank=True, help_text="The served model's name.")
    v = models.PositiveIntegerField(help_text="Verifications per solution.")
    per_problem = models.PositiveIntegerField(
        default=0, help_text="Solutions verified per problem, the first ones (0: all)."
    )
    options = models.JSONField(default=dict, blank=True)
    verifications = models.PositiveBigIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="verificationrun_unique_name")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="verificationrun_status")]

    def __str__(self) -> str:
        return f"verification run {self.name} in {self.project} ({self.status})"


class SolutionVerification(models.Model):
    """Verification ``index`` of a sampled solution: its text, the text verdict (null:
    none found), p(yes)/p(no) at the verdict position (null: not given) and its tokens."""

    run = models.ForeignKey(VerificationRun, on_delete=models.CASCADE, related_name="+")
    solution = models.ForeignKey(
        SampledSolution, on_delete=models.CASCADE, related_name="verifications", db_index=False
    )
    index = models.PositiveIntegerField()
    text = models.TextField()
    verdict = models.BooleanField(null=True)
    p_yes = models.FloatField(null=True)
    p_no = models.FloatField(null=True)
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "solution", "index"], name="solutionverification_unique"
            )
        ]
        indexes = [models.Index(fields=["solution"], name="solutionverification_solution")]

    def __str__(self) -> str:
        return f"verification {self.index} of solution {self.solution_id} in run {self.run_id}"
