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

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q


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
    # Queue and quality settings of the annotation workspace (annotator/queue.py).
    queue_order = models.CharField(
        max_length=20, choices=QueueOrder.choices, default=QueueOrder.IMPORT, db_default="import"
    )
    queue_seed = models.IntegerField(default=0, db_default=0)
    # Which order Trace.queue_rank was computed for ("random:7"); a mismatch re-ranks.
    queue_ranked_as = models.CharField(max_length=64, blank=True, default="", db_default="")
    lock_minutes = models.PositiveSmallIntegerField(
        default=10,
        db_default=10,
        validators=[MinValueValidator(1)],
        help_text="How long a served trace is held for its annotator.",
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


def text_hash(text: str) -> str:
    """Problems are identified by their text within a project, so best-of-N files and
    benchmark files over the same problems share one Problem row."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


class Problem(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="problems")
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


class TraceQuerySet(models.QuerySet):
    def labelled(self) -> TraceQuerySet:
        return self.filter(Exists(Annotation.objects.filter(trace=OuterRef("pk"))))

    def unlabelled(self) -> TraceQuerySet:
        return self.exclude(Exists(Annotation.objects.filter(trace=OuterRef("pk"))))


class Trace(models.Model):
    """One model solution of a problem, split into steps."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="traces")
    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="traces")
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
    # Denormalised for the queue (annotator/queue.py); db defaults because imports COPY
    # rows without these columns. label_count: real annotators (not import-* users) whose
    # latest label gives a verdict or flags a bad problem.
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


class Step(models.Model):
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="steps", db_index=False)
    index = models.PositiveIntegerField(help_text="0-based position in the trace.")
    text = models.TextField()

    class Meta:
        ordering = ["trace", "index"]
        constraints = [models.UniqueConstraint(fields=["trace", "index"], name="step_unique_index")]

    def __str__(self) -> str:
        return f"step {self.index} of trace {self.trace_id}"


class AnnotationKind(models.TextChoices):
    LABEL = "label", "Annotator label"
    ADJUDICATION = "adjudication", "Adjudicated label"
    GOLD = "gold", "Gold reference label"


class Annotation(models.Model):
    """One submitted label of a trace. Rows are never edited: see the module docstring."""

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations"
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


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """An import started from the UI or the API; a Celery worker runs it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    file_name = models.CharField(max_length=255)
    path = models.CharField(max_length=500)
    format = models.CharField(max_length=32, default="auto")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    records_done = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"import {self.file_name} into {self.project} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {JobStatus.DONE, JobStatus.FAILED}


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
