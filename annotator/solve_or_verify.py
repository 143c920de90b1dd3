"""A sampling run and a verification run as :class:`scoring.curves.Pool` s, one per problem,
for the success-against-compute curves (``scoring.curves``).

Each problem's samples are its solutions in index order: the answer (None where none was
written), its correctness and token count; the verified ones carry their
verifications in index order. An answer from a completer run is normalised by the
project's grading (``scoring.grading.normalise_answer``), so votes group answers that
differ in spacing or thousands separators; an imported run's answers are the
reference's normalised strings already and are kept as they are. Only a prefix of a
problem's solutions counts as verified, each with all V verifications (a run still
going, or one that failed midway, leaves the rest unverified), as the reference's
layout has them.
"""

from __future__ import annotations

from collections import defaultdict

from annotator.models import SampledSolution, SamplingRun, SolutionVerification, VerificationRun
from annotator.sampling import is_import
from scoring.curves import Pool, Sample, Verification
from scoring.grading import normalise_answer


def _answer(text: str, imported: bool) -> str | None:
    answer = text if imported else normalise_answer(text) if text else ""
    return None if answer == "" or "invalidanswer" in answer else answer


def pools_for(
    sampling_run: SamplingRun, verification_run: VerificationRun | None = None
) -> tuple[list[int], list[Pool]]:
    """``(problem ids, pools)`` in problem order."""
    imported = is_import(sampling_run.completer)
    verifications: dict[int, list[Verification]] = defaultdict(list)
    if verification_run is not None:
        if verification_run.sampling_run_id != sampling_run.pk:
            raise ValueError("the verification run verifies another sampling run")
        rows = (
            SolutionVerification.objects.filter(run=verification_run)
            .order_by("solution_id", "index")
            .values_list("solution_id", "p_yes", "p_no", "verdict", "tokens")
            .iterator(chunk_size=5000)
        )
        for solution_id, p_yes, p_no, verdict, tokens in rows:
            verifications[solution_id].append(Verification(p_yes, p_no, verdict, tokens))
    full = verification_run.v if verification_run is not None else 0
    problems: list[int] = []
    samples: dict[int, list[Sample]] = {}
    rows = (
        SampledSolution.objects.filter(run=sampling_run)
        .order_by("problem_id", "index")
        .values_list(
            "pk", "problem_id", "tokens", "trace__final_answer", "trace__final_answer_correct"
        )
        .iterator(chunk_size=5000)
    )
    for pk, problem_id, tokens, final_answer, correct in rows:
        if problem_id not in samples:
            problems.append(problem_id)
            samples[problem_id] = []
        pool = samples[problem_id]
        answer = _answer(final_answer, imported)
        mine = verifications.get(pk, [])
        prefix = all(s.verifications for s in pool)
        verified = tuple(mine) if len(mine) >= full and mine and prefix else ()
        pool.append(Sample(answer, bool(correct) and answer is not None, tokens, verified))
    return problems, [Pool(tuple(samples[p])) for p in problems]
