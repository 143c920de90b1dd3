"""``python -m scoring score ...``, ``python -m scoring evaluate ...``,
``python -m scoring mc ...``, ``python -m scoring train ...``,
``python -m scoring curves ...``, ``python -m scoring laser-cref ...``,
``python -m scoring grounded ...`` and ``python -m scoring serve ...``."""

from __future__ import annotations

import argparse
import ast
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from scoring.formats import FORMATS, ImportFormatError, read_scores, read_traces, write_scores
from scoring.formats.gsm8k import REFERENCE_GENERATOR
from scoring.metrics import (
    Solution,
    auroc_from_counts,
    best_from_sweep,
    best_of_n_from_aggregates,
    min_on_final_from_summaries,
    solution_aggregates,
    step_label_counts,
    summarize,
    sweep_from_summaries,
    table_from_summaries,
)
from scoring.options import (
    COMPLETER_OPTIONS,
    TRAIN_OPTIONS,
    OptionError,
    check_options,
    check_server_url,
)
from scoring.steps import SPLITTERS


def parse_option(text: str) -> tuple[str, object]:
    r"""``KEY=VALUE`` -> (key, value): an int, float or bool where it reads as one, else a
    string with backslash escapes decoded (``\n`` is a newline); a quoted value is a
    Python string literal, kept a string.

    >>> parse_option(r"step-separator=\n\n"), parse_option("n='8'")
    (('step_separator', '\n\n'), ('n', '8'))
    """
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key = key.replace("-", "_")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        try:
            return key, str(ast.literal_eval(value))
        except (ValueError, SyntaxError) as error:
            raise argparse.ArgumentTypeError(f"bad quoted value in {text!r}: {error}") from None
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    if "\\" in value:
        try:
            # latin-1 + backslashreplace keeps non-ASCII text intact through unicode_escape
            value = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError as error:
            raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {error}") from None
    return key, value


def cmd_score(args: argparse.Namespace) -> int:
    from scoring.adapters import load_adapter, needs_model
    from scoring.engine import score_traces

    try:
        traces = read_traces(
            args.input, args.format, split=args.split, step_splitter=args.step_splitter
        )
    except ImportFormatError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    options = dict(args.option)
    if needs_model(args.adapter):
        options.setdefault("device", args.device)
        if args.dtype:
            options["dtype"] = args.dtype
    started = time.perf_counter()
    adapter = load_adapter(args.adapter, args.model, **options)
    loaded = time.perf_counter()

    from tqdm import tqdm

    bar = tqdm(total=len(traces), file=sys.stderr, unit="trace", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    n_tokens = 0
    for item in write_scores(
        args.output, score_traces(adapter, traces, args.batch_tokens, progress)
    ):
        n_tokens += item.n_tokens
    bar.close()
    seconds = time.perf_counter() - loaded
    rate = f", {n_tokens / seconds:,.0f} tokens/s" if n_tokens else ""
    print(
        f"scored {len(traces)} traces in {seconds:.1f}s (model load {loaded - started:.1f}s){rate} -> {args.output}",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.export:
        return _evaluate_export(args)
    if not args.scores or not args.gold:
        print("evaluate needs --scores and --gold, or --export", file=sys.stderr)
        return 2
    scores = read_scores(args.scores)
    by_split_scores: dict[str, list[list[float]]] = defaultdict(list)
    by_split_labels: dict[str, list[int]] = defaultdict(list)
    missing = 0
    for gold_path in args.gold:
        for trace in read_traces(gold_path):
            if trace.first_error_step is None:
                continue
            if trace.id not in scores:
                missing += 1
                continue
            by_split_scores[trace.split].append(scores[trace.id])
            by_split_labels[trace.split].append(trace.first_error_step)
    if not by_split_scores:
        print("no scored trace has a gold label", file=sys.stderr)
        return 1
    status = _print_evaluation(by_split_scores, by_split_labels, args.threshold)
    if args.self_verification and status == 0:
        status = _print_self_verification(args.gold, scores)
    if missing:
        print(f"({missing} gold traces had no scores and were skipped)", file=sys.stderr)
    return status


def _print_evaluation(
    by_split_scores: dict[str, list[list[float]]],
    by_split_labels: dict[str, list[int]],
    threshold: str,
) -> int:
    """The ProcessBench table with step AUROC and min-on-final per split, then the best
    tau over every labelled trace; the figures the project dashboard shows."""
    summaries = {
        split: [
            summarize(s, label)
            for s, label in zip(by_split_scores[split], by_split_labels[split], strict=True)
        ]
        for split in by_split_scores
    }
    if threshold.startswith("tune:"):
        split = threshold.removeprefix("tune:")
        if split not in summaries:
            print(f"cannot tune on {split!r}: splits are {sorted(summaries)}", file=sys.stderr)
            return 1
        tau, _ = best_from_sweep(sweep_from_summaries(summaries[split]))
        tau_note = f"tau = {tau:.2f} (tuned on {split})"
    else:
        tau = float(threshold)
        tau_note = f"tau = {tau:g}"
    table = table_from_summaries(summaries, tau)
    print(f"ProcessBench, first error = first step scored below tau; {tau_note}")
    print(
        f"{'split':<16}{'n_err':>6}{'n_cor':>6}{'acc_err':>9}{'acc_cor':>9}{'F1':>7}{'AUROC':>8}{'min@last':>10}"
    )
    for split, row in table.items():
        if split == "average":
            auc = final = ""
        else:
            counts = step_label_counts(by_split_scores[split], by_split_labels[split])
            auc = f"{auroc_from_counts(counts):.3f}"
            final = f"{min_on_final_from_summaries(summaries[split]):.3f}"
        print(
            f"{split:<16}{row.n_err:>6}{row.n_cor:>6}{row.acc_err:>9.1f}{row.acc_cor:>9.1f}{row.f1:>7.1f}{auc:>8}{final:>10}"
        )
    pooled = [s for rows in summaries.values() for s in rows]
    best, result = best_from_sweep(sweep_from_summaries(pooled))
    print(f"best tau over all splits: {best:.2f} (F1 {result.f1:.1f})")
    return 0


def _print_self_verification(gold_paths: list[str], scores: dict[str, list[float]]) -> int:
    """LaSeR's self-verification figures per split (``scoring.metrics.self_verification``):
    every scored gold trace with a graded final answer, its last step's score as the
    solution's (LaSeR's r_s is on every step); judged correct when above 0.5, as
    ``calculate_self_rewarding_scores.py`` lines 331-338 judge. Its "all" figures: the
    scorer scores every trace, so a solution with no answer keeps its r_s here (the
    reference sets it to 0)."""
    from scoring.metrics import self_verification

    by_split: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for gold_path in gold_paths:
        for trace in read_traces(gold_path):
            if trace.final_answer_correct is None or not scores.get(trace.id):
                continue
            by_split[trace.split][0].append(scores[trace.id][-1])
            by_split[trace.split][1].append(trace.final_answer_correct)
    if not by_split:
        print("self-verification: no scored trace has a graded final answer", file=sys.stderr)
        return 1
    print("Self-verification (LaSeR), judged correct = last step's score > 0.5")
    print(
        f"{'split':<16}{'n_cor':>6}{'n_wrong':>8}{'acc_cor':>9}{'acc_wrong':>10}{'acc':>7}{'F1':>7}"
    )
    pooled: tuple[list[float], list[bool]] = ([], [])
    for split, (values, correct) in by_split.items():
        pooled[0].extend(values)
        pooled[1].extend(correct)
        row = self_verification(values, correct)
        print(
            f"{split:<16}{row.n_correct:>6}{row.n_wrong:>8}{row.acc_correct:>9.1f}"
            f"{row.acc_wrong:>10.1f}{row.accuracy:>7.1f}{row.f1:>7.1f}"
        )
    if len(by_split) > 1:
        row = self_verification(*pooled)
        print(
            f"{'all':<16}{row.n_correct:>6}{row.n_wrong:>8}{row.acc_correct:>9.1f}"
            f"{row.acc_wrong:>10.1f}{row.accuracy:>7.1f}{row.f1:>7.1f}"
        )
    return 0


def _evaluate_export(args: argparse.Namespace) -> int:
    """Every run in a Stepwise JSONL export (``export_dataset --format jsonl --scores``):
    the labels are the records' ``first_error_step``, the scores their ``step_scores``;
    best-of-N over problems with 2+ solutions of known final-answer correctness."""
    import json

    records = []
    with open(args.export, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    names = args.run or sorted({name for r in records for name in r.get("step_scores", {})})
    if not names:
        print(f"{args.export} holds no step scores", file=sys.stderr)
        return 1
    for name in names:
        print(f"== run {name}")
        by_split_scores: dict[str, list[list[float]]] = defaultdict(list)
        by_split_labels: dict[str, list[int]] = defaultdict(list)
        problems: dict[str, list[Solution]] = defaultdict(list)
        for record in records:
            raw = record.get("step_scores", {}).get(name)
            if raw is None:
                continue
            scores = [math.nan if s is None else float(s) for s in raw]
            label = record.get("first_error_step")
            if label is not None:
                split = record.get("split") or "(no split)"
                by_split_scores[split].append(scores)
                by_split_labels[split].append(label)
            # A reference trace (the dataset's own solution) is no best-of-N candidate.
            if (
                record.get("final_answer_correct") is not None
                and record.get("generator") != REFERENCE_GENERATOR
            ):
                problems[record["problem"]].append(
                    Solution(
                        answer=record.get("final_answer") or None,
                        correct=record["final_answer_correct"],
                        scores=solution_aggregates(scores),
                        first_error_step=label,
                    )
                )
        if by_split_scores:
            status = _print_evaluation(by_split_scores, by_split_labels, args.threshold)
            if status:
                return status
        else:
            print("no scored trace has a human label")
        groups = [p for p in problems.values() if len(p) >= 2]
        if groups:
            table = best_of_n_from_aggregates(groups)
            print(f"best-of-N over {len(groups)} problems")
            for key, value in table.items():
                print(f"{key:<24}{value:>7.1f}")
    return 0


def _done_ids(path: str) -> set[str]:
    """Ids already written to an ``mc`` output; a last line cut short by a kill is dropped
    (the file is truncated to the last whole line) so the trace is labelled again."""
    import json
    import os

    if not os.path.exists(path):
        return set()
    done: set[str] = set()
    keep = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                done.add(json.loads(line)["id"])
            except (ValueError, KeyError):
                break
            keep += len(line)
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return done


def cmd_mc(args: argparse.Namespace) -> int:
    import json

    from scoring.completers import CompleterError, load_completer
    from scoring.montecarlo import PromptTemplate, estimate

    options = dict(args.option)
    for key in ("temperature", "top_p", "max_tokens", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.stop:
        options["stop"] = args.stop
    try:
        check_options(options, COMPLETER_OPTIONS)
        if args.completer.startswith("openai:"):
            check_server_url(args.completer.partition(":")[2])
    except OptionError as error:
        print(f"bad option: {error}", file=sys.stderr)
        return 2
    try:
        traces = read_traces(
            args.input, args.format, split=args.split, step_splitter=args.step_splitter
        )
    except ImportFormatError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    template = PromptTemplate(args.template) if args.template else PromptTemplate()
    completer = load_completer(args.completer, args.model, **options)
    done = _done_ids(args.output)
    todo = [t for t in traces if t.id not in done and t.reference_answer]
    no_answer = sum(1 for t in traces if not t.reference_answer)
    if traces and no_answer == len(traces):
        print(
            f"no trace in {args.input} has a reference answer to grade rollouts against "
            "(is --format right?)",
            file=sys.stderr,
        )
        return 2

    from tqdm import tqdm

    rollouts = tokens = 0
    started = time.perf_counter()
    with open(args.output, "a") as out:
        for trace in tqdm(todo, file=sys.stderr, unit="trace", disable=args.quiet):
            try:
                result = estimate(trace, completer, args.n, args.mode, template=template)
            except CompleterError as error:
                print(f"trace {trace.id}: {error}", file=sys.stderr)
                return 1
            out.write(json.dumps(result.as_record()) + "\n")
            out.flush()  # a killed run keeps every finished trace
            rollouts += result.rollouts
            tokens += result.tokens
    seconds = time.perf_counter() - started
    print(
        f"labelled {len(todo)} traces ({len(done)} already in {args.output}, {no_answer} without "
        f"a reference answer skipped): {rollouts} rollouts, {tokens} tokens in {seconds:.1f}s",
        file=sys.stderr,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from scoring.training import TrainConfig, is_labelled, train

    values = {
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_tokens": args.batch_tokens,
        "grad_accum": args.grad_accum,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "save_every": args.save_every,
        "seed": args.seed,
        "step_separator": args.step_separator,
        "device": args.device,
    }
    try:
        check_options({k: v for k, v in values.items() if v is not None}, TRAIN_OPTIONS)
    except OptionError as error:
        print(f"bad option: {error}", file=sys.stderr)
        return 2
    data = {}
    for role, path in (("train", args.train), ("eval", args.eval)):
        if not path:
            data[role] = []
            continue
        try:
            data[role] = read_traces(
                path, args.format, split=args.split, step_splitter=args.step_splitter
            )
        except ImportFormatError as error:
            print(f"cannot read {path}: {error}", file=sys.stderr)
            return 2
    labelled = [t for t in data["train"] if is_labelled(t)]
    if not labelled:
        print(f"no labelled trace in {args.train}", file=sys.stderr)
        return 2
    config = TrainConfig(
        kind=args.kind,
        base=args.base,
        output_dir=args.output,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        epochs=args.epochs,
        lr=args.lr,
        batch_tokens=args.batch_tokens,
        grad_accum=args.grad_accum,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        truncate_after_first_error=not args.keep_after_first_error,
        step_separator=args.step_separator,
        device=args.device,
    )
    result = train(config, labelled, data["eval"], progress=not args.quiet)
    figures = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if k != "epoch")
    print(
        f"trained {result.global_step} steps on {len(labelled)} traces in {result.seconds:.1f}s, "
        f"loss {result.train_loss:.4f}{'; ' + figures if figures else ''} -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _sizes(text: str) -> list[int]:
    """``1,2,4`` -> [1, 2, 4]: distinct positive integers, for ``--s``, ``--v``, ``--sc``."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 1, got {text!r}")
    return values


def _lambda(text: str) -> float | None:
    """``--lambda``: a number >= 0, or ``measured`` (None)."""
    if text == "measured":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'measured', got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"lambda must be a finite number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(limit.bit_length()) if 2**i <= limit]


def _prm_scores(path: str, pools: list, how: str) -> list[list[float]]:
    """Per problem, the aggregated PRM score of its first solutions, from a score file
    (``python -m scoring score``'s JSONL) whose ids are ``"{problem}/{solution}"``: the
    samples file's number and the sample's index in it."""
    from scoring.metrics import aggregate

    steps = read_scores(path)
    out = []
    for i, pool in enumerate(pools):
        scores = []
        for j in range(len(pool.samples)):
            trace_id = f"{i}/{j}"
            if trace_id not in steps:
                break
            finite = [s for s in steps[trace_id] if not math.isnan(s)]
            if not finite:
                raise ImportFormatError(path, f"trace {trace_id!r} has no step score", "scores")
            scores.append(aggregate(finite, how))
        out.append(scores)
    unknown = sorted(set(steps) - {f"{i}/{j}" for i, s in enumerate(out) for j in range(len(s))})
    if unknown:
        raise ImportFormatError(
            path,
            f"ids {unknown[:3]} are not '<problem>/<solution>' of the first solutions of a "
            f"problem in --samples (each problem's ids must run 0, 1, 2, ... with none missing)",
            "id",
        )
    return out


def cmd_curves(args: argparse.Namespace) -> int:
    """Success rate against compute for SC, GenRM best-of-S at each V and a PRM, from data
    in the layout of ``nishadsinghi/sc-genrm-scaling`` (see :mod:`scoring.formats.sc_genrm`);
    one ``dataclasses.asdict(CurvePoint)`` per row, JSON or CSV by the output's suffix."""
    import csv
    import json
    from dataclasses import asdict, fields
    from pathlib import Path

    from scoring.curves import CurvePoint, curves
    from scoring.formats.sc_genrm import iter_pools

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".json", ".csv"):
        print(f"--output {args.output}: name a .json or .csv file", file=sys.stderr)
        return 2
    if args.prm_weighted and not args.prm_scores:
        print("--prm-weighted needs --prm-scores", file=sys.stderr)
        return 2
    if args.v and not args.verifications:
        print("--v needs --verifications (GenRM points need verifications)", file=sys.stderr)
        return 2
    try:
        pools = list(
            iter_pools(
                args.samples,
                args.verifications,
                answer_style=args.answer_style,
                max_samples=args.max_samples,
                max_verified=args.max_verified,
                max_verifications=args.max_verifications,
            )
        )
        prm = _prm_scores(args.prm_scores, pools, args.prm_aggregate) if args.prm_scores else None
    except (ImportFormatError, OSError) as error:
        print(f"cannot read the data: {error}", file=sys.stderr)
        return 2
    verified = args.verifications is not None
    sc_sizes = args.sc or _powers_of_two(min(len(p.samples) for p in pools))
    if verified and min(p.verified for p in pools) == 0:
        empty = next(i for i, p in enumerate(pools) if not p.verified)
        print(f"--verifications: problem_{empty} holds no solution_*.yaml", file=sys.stderr)
        return 2
    sizes: list[int] = []
    counts: list[int] = []
    if verified:
        sizes = args.s or _powers_of_two(min(p.verified for p in pools))
        fewest = min(len(s.verifications) for p in pools for s in p.samples[: p.verified])
        counts = args.v or _powers_of_two(fewest)
    try:
        points = curves(
            pools,
            sc_sizes=sc_sizes,
            sizes=sizes,
            verification_counts=counts,
            rule=args.rule,
            mode=args.mode,
            lam=args.lam,
            prm_scores=prm,
            prm_weighted=args.prm_weighted,
            seed=args.seed,
            grouping=args.grouping,
        )
    except ValueError as error:
        if args.lam is None and "token counts" in str(error):
            error = ValueError(f"{error} (--lambda 1 for GenRM-Base, 2 for GenRM-FT)")
        print(f"cannot compute the curves: {error}", file=sys.stderr)
        return 2
    rows = [asdict(point) for point in points]
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        if suffix == ".json":
            json.dump(rows, out, indent=1)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(CurvePoint)])
            writer.writeheader()
            writer.writerows(rows)
    print(
        f"{len(pools)} problems: {len(rows)} points ({args.mode}) -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _token(text: str) -> int | str:
    """A token id where ``text`` is a number, else a token's text (``laser-cref --z-c``)."""
    return int(text) if text.isdigit() else text


def text_histogram(values: Sequence[float], bins: int, width: int = 40) -> list[str]:
    """One line per equal-width bin over [min, max]: its range, its count and a bar.

    >>> text_histogram([0.0, 1.0, 1.0, 2.0], bins=2, width=4)
    ['[0, 1)  1  #', '[1, 2]  3  ####']
    """
    low, high = min(values), max(values)
    size = (high - low) / bins or 1.0  # all values equal: one bin holds them all
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / size), bins - 1)] += 1
    most = max(counts)
    lines = []
    for i, count in enumerate(counts):
        close = "]" if i == bins - 1 else ")"
        bar = "#" * round(width * count / most)
        line = f"[{low + i * size:.4g}, {low + (i + 1) * size:.4g}{close}  {count}  {bar}"
        lines.append(line.rstrip())
    return lines


def cmd_laser_cref(args: argparse.Namespace) -> int:
    """LaSeR's c_ref for a model from its own traces: log pi(z_c | x, y, EOS) for every
    trace (one prefill each, through the scoring engine), its mean, spread and histogram.
    The paper takes c_ref as a constant standing for log pi_ref(z_c | x, y) of the policy
    before LaSeR training (an unused token's log-prob, nearly the same for every solution),
    so give that model for a LaSeR-trained policy; the spread shows how far "constant" holds."""
    import statistics

    from scoring.adapters.laser import FAMILY_DEFAULTS, LaSeR
    from scoring.engine import score_traces

    if args.bins < 1:
        print("--bins must be at least 1", file=sys.stderr)
        return 2
    try:
        traces = read_traces(
            args.input, args.format, split=args.split, step_splitter=args.step_splitter
        )
    except ImportFormatError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    try:
        # c_ref=0: only log pi(z_c) (each result's raw) is wanted, which no c_ref changes
        adapter = LaSeR.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, z_c=args.z_c, c_ref=0.0
        )
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return 2
    logps = [r.raw[0] for r in score_traces(adapter, traces, args.batch_tokens) if r.raw]
    if not logps:
        print(f"{args.input} holds no trace with steps", file=sys.stderr)
        return 1
    mean = statistics.fmean(logps)
    spread = statistics.pstdev(logps)
    family = FAMILY_DEFAULTS.get(adapter.model.config.model_type)
    print(f"log pi(z_c | x, y, EOS), z_c = {adapter.z_c} {adapter.z_c_text!r}, {len(logps)} traces")
    print(f"mean {mean:.4f}  std {spread:.4f}  min {min(logps):.4f}  max {max(logps):.4f}")
    if family is not None:
        print(f"(the reference's c_ref for this family: {family.c_ref})")
    print(f"c_ref = {mean:.4f} (the mean; --option c_ref={mean:.4f} when scoring)")
    for line in text_histogram(logps, args.bins):
        print(line)
    return 0


def _completer_options(
    spec: str, options: dict, temperature: float | None, max_tokens: int | None, seed: int | None
) -> dict:
    """A completer's options from ``--option`` pairs and the sampling flags; raises
    :class:`OptionError` on a bad option or server URL."""
    options = dict(options)
    for key, value in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)):
        if value is not None:
            options.setdefault(key, value)
    check_options(options, COMPLETER_OPTIONS)
    if spec.startswith("openai:"):
        check_server_url(spec.partition(":")[2])
    return options


def _write_atomically(path, text: str) -> None:
    import os

    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _read_problems(path: str) -> list:
    """Problems from a JSON list or JSONL file (:func:`problem_from_record`'s fields)."""
    import json

    from scoring.grounded.search import problem_from_record

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    problems = [problem_from_record(r, i) for i, r in enumerate(records)]
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("problem ids repeat")
    return problems


def cmd_grounded(args: argparse.Namespace) -> int:
    """GroundedPRM's tree search for each problem; trees and both exports in ``--output``.

    Resumable: ``trees.jsonl`` holds one finished search per line (its problems are
    skipped), ``partial/<id>.json`` the state of an unfinished one after its last round;
    the exports are rewritten from ``trees.jsonl`` at the end."""
    import hashlib
    import json
    import os
    from pathlib import Path

    from scoring.completers import CompleterError, load_completer
    from scoring.grounded.checking import Checker
    from scoring.grounded.exports import generative_records, trl_records
    from scoring.grounded.search import Search, SearchState, extract_root, new_search

    try:
        problems = _read_problems(args.problems)
    except (OSError, ValueError) as error:
        print(f"cannot read {args.problems}: {error}", file=sys.stderr)
        return 2
    try:
        generator_options = _completer_options(
            args.generator, dict(args.option), args.temperature, args.max_tokens, args.seed
        )
        judge_options = None
        if args.judge != "tool":
            judge_options = _completer_options(
                args.judge,
                dict(args.judge_option),
                args.judge_temperature,
                args.max_tokens,
                args.seed,
            )
    except OptionError as error:
        print(f"bad option: {error}", file=sys.stderr)
        return 2
    generator = load_completer(args.generator, args.model, **generator_options)
    judge = None
    if judge_options is not None:
        judge = load_completer(args.judge, args.judge_model or args.model, **judge_options)
    search = Search(generator, Checker(writer=judge or generator, judge=judge))

    out = Path(args.output)
    partial = out / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    trees_path = out / "trees.jsonl"
    done = _done_ids(str(trees_path))

    def saved_as(problem_id: str) -> Path:
        # ids are free text: the file is named by a digest of the id
        return partial / f"{hashlib.sha256(problem_id.encode()).hexdigest()[:24]}.json"

    started = time.perf_counter()
    searched = resumed = 0
    with open(trees_path, "a", encoding="utf-8") as trees:
        for problem in problems:
            path = saved_as(problem.id)
            if problem.id in done:
                path.unlink(missing_ok=True)
                continue
            try:
                if path.exists():
                    state = SearchState.from_dict(json.loads(path.read_text(encoding="utf-8")))
                    if state.problem.id != problem.id or state.tree.problem != problem.problem:
                        print(f"{path} is not problem {problem.id}'s search", file=sys.stderr)
                        return 2
                    resumed += 1
                else:
                    rooted = extract_root(problem, generator)
                    state = new_search(rooted, args.seed or 0, args.selection)

                def save(state: SearchState, path: Path = path) -> None:
                    _write_atomically(path, json.dumps(state.to_dict(), ensure_ascii=False))

                save(state)
                state = search.run(state, on_round=save)
            except CompleterError as error:
                print(f"problem {problem.id}: {error} (resume by running again)", file=sys.stderr)
                return 1
            trees.write(json.dumps(state.to_dict(), ensure_ascii=False) + "\n")
            trees.flush()
            os.fsync(trees.fileno())
            path.unlink(missing_ok=True)
            searched += 1
            if not args.quiet:
                print(
                    f"{problem.id}: {state.tree.rounds} rounds, {len(state.tree.nodes)} nodes",
                    file=sys.stderr,
                )
    states = [
        SearchState.from_dict(json.loads(line))
        for line in trees_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    trl = [r for s in states for r in trl_records(s)]
    generative = [r for s in states for r in generative_records(s)]
    for name, records in (("steps.trl.jsonl", trl), ("generative.jsonl", generative)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        _write_atomically(out / name, text)
    print(
        f"searched {searched} problems ({resumed} resumed, {len(done)} already done) in "
        f"{time.perf_counter() - started:.1f}s: {len(trl)} labelled paths -> {out}",
        file=sys.stderr,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The reward service (:mod:`scoring.reward_service`) on a model loaded once."""
    from scoring.adapters import load_adapter, needs_model
    from scoring.reward_engine import JsonlRolloutWriter
    from scoring.reward_service import serve, settings_from_args
    from scoring.rollout_journal import JournalInUse

    options = dict(args.option)
    if needs_model(args.adapter):
        options.setdefault("device", args.device)
        if args.dtype:
            options["dtype"] = args.dtype
    settings = settings_from_args(args, f"reward-service:{args.adapter}")
    try:
        settings.check()
    except ValueError as error:
        print(f"bad transform settings: {error}", file=sys.stderr)
        return 2
    adapter = load_adapter(args.adapter, args.model, **options)
    log = JsonlRolloutWriter(args.log_jsonl) if args.log_jsonl else None
    journal = args.log_journal or (args.log_jsonl + ".journal" if args.log_jsonl else None)
    try:
        serve(
            adapter,
            settings,
            host=args.host,
            port=args.port,
            token=args.token,
            log=log,
            max_body_bytes=args.max_body_bytes,
            max_items=args.max_items,
            journal=journal,
        )
    except (ValueError, JournalInUse) as error:
        print(str(error), file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score traces with a PRM adapter, write JSONL")
    score.add_argument(
        "--adapter", required=True, help="adapter name, e.g. qwen-prm, arithmetic-check"
    )
    score.add_argument("--model", help="hub id or local directory")
    score.add_argument(
        "--input", required=True, help="traces in any format the importer reads (see --format)"
    )
    score.add_argument(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="the input's format (default: detected from the first record)",
    )
    score.add_argument(
        "--split",
        default="",
        help="split for every trace (default: from the records or the file name)",
    )
    score.add_argument(
        "--step-splitter",
        default="paragraphs",
        choices=tuple(SPLITTERS),
        help="how the jsonl format splits a solution string into steps",
    )
    score.add_argument("--output", required=True, help="JSONL with per-step scores and timing")
    score.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 (default: $STEPWISE_DEVICE or auto)"
    )
    score.add_argument(
        "--dtype", default=None, help="float32, bfloat16 (default: bf16 on CUDA, fp32 on CPU)"
    )
    score.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batch")
    score.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_option,
        metavar="KEY=VALUE",
        help="adapter option, e.g. ref_model=PATH, beta=0.005, base_url=URL, n=8, "
        "trust_remote_code=true, step_separator='\\n\\n' (escapes decoded)",
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.set_defaults(func=cmd_score)

    evaluate = sub.add_parser("evaluate", help="ProcessBench table from scores and gold labels")
    evaluate.add_argument("--scores", help="a score file (JSONL) that `score` wrote")
    evaluate.add_argument("--gold", action="append", help="repeat for several splits")
    evaluate.add_argument(
        "--export",
        help="a Stepwise JSONL export with step_scores: every run's figures and best-of-N",
    )
    evaluate.add_argument(
        "--run", action="append", help="with --export: only this run (repeatable)"
    )
    evaluate.add_argument("--threshold", default="0.5", help="a number, or tune:SPLIT")
    evaluate.add_argument(
        "--self-verification",
        action="store_true",
        help="also the solution-level table of an outcome verifier such as LaSeR: a trace "
        "judged correct when its last step's score > 0.5, against its final_answer_correct",
    )
    evaluate.set_defaults(func=cmd_evaluate)

    mc = sub.add_parser("mc", help="Monte-Carlo step labels (Math-Shepherd, OmegaPRM)")
    mc.add_argument("--input", required=True, help="traces with reference answers, any format")
    mc.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    mc.add_argument("--split", default="")
    mc.add_argument("--step-splitter", default="paragraphs", choices=tuple(SPLITTERS))
    mc.add_argument("--completer", required=True, help="openai:BASE_URL or hf:MODEL_PATH")
    mc.add_argument("--model", help="the served model's name (openai completer)")
    mc.add_argument("--n", type=int, default=8, help="rollouts per prefix")
    mc.add_argument("--mode", default="exhaustive", choices=("exhaustive", "binary"))
    mc.add_argument("--temperature", type=float)
    mc.add_argument("--top-p", type=float)
    mc.add_argument("--max-tokens", type=int)
    mc.add_argument("--seed", type=int)
    mc.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    mc.add_argument("--template", help="prompt with {problem} and {prefix}")
    mc.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_option,
        metavar="KEY=VALUE",
        help="completer option: chat=true, max_in_flight=64, timeout_s=60, retries=3, device=cuda",
    )
    mc.add_argument("--output", required=True, help="JSONL; ids already in it are skipped")
    mc.add_argument("--quiet", action="store_true", help="no progress bar")
    mc.set_defaults(func=cmd_mc)

    tr = sub.add_parser("train", help="fine-tune a PRM on labelled traces")
    tr.add_argument(
        "--kind", required=True, choices=("qwen-prm", "token-classification", "math-shepherd")
    )
    tr.add_argument("--base", required=True, help="hub id or local directory to start from")
    tr.add_argument(
        "--train", required=True, help="labelled traces in any format the importer reads"
    )
    tr.add_argument("--eval", help="held-out labelled traces: ProcessBench F1 and step AUROC")
    tr.add_argument("--output", required=True, help="directory for checkpoints and the model")
    tr.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    tr.add_argument("--split", default="")
    tr.add_argument("--step-splitter", default="paragraphs", choices=tuple(SPLITTERS))
    tr.add_argument("--lora-r", type=int, default=0, help="LoRA rank (default 0: full fine-tune)")
    tr.add_argument("--lora-alpha", type=int, default=None, help="default 2 x rank")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--lr", type=float, default=None, help="default 1e-4 LoRA, 2e-6 full")
    tr.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per batch")
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    tr.add_argument("--eval-every", type=int, default=0, help="steps (default: every epoch)")
    tr.add_argument("--save-every", type=int, default=0, help="steps (default: every epoch)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--step-separator", default="\n", help="token-classification's separator")
    tr.add_argument(
        "--keep-after-first-error",
        action="store_true",
        help="keep the (unlabelled) steps after a first error instead of cutting them",
    )
    tr.add_argument("--device", default=None, help="cpu, cuda (default: $STEPWISE_DEVICE or auto)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    cu = sub.add_parser(
        "curves",
        help="success rate against compute: SC, GenRM best-of-S, PRM best-of-N (JSON/CSV)",
    )
    cu.add_argument("--samples", required=True, help="folder of {i}.yaml samples files")
    cu.add_argument(
        "--verifications", help="folder of problem_{i}/solution_{j}.yaml verification files"
    )
    cu.add_argument(
        "--lambda",
        dest="lam",
        type=_lambda,
        default=None,
        metavar="X|measured",
        help="verification cost per solution (default: measured from token counts; the "
        "reference's data has none: 1 for GenRM-Base, 2 for GenRM-FT)",
    )
    cu.add_argument(
        "--mode",
        default="exact",
        choices=("exact", "replay"),
        help="exact expectation (default) or the reference's seed-33 draws",
    )
    cu.add_argument("--s", type=_sizes, help="best-of-S sizes (default: 1, 2, 4... verified)")
    cu.add_argument("--v", type=_sizes, help="verification counts (default: 1, 2, 4...)")
    cu.add_argument("--sc", type=_sizes, help="majority-vote sizes (default: 1, 2, 4... all)")
    cu.add_argument(
        "--rule",
        default="hybrid",
        choices=("hybrid", "logprobs", "text"),
        help="verdict: p(yes) falling back to the text (hybrid), p(yes) only, or the text only",
    )
    cu.add_argument(
        "--answer-style",
        default="minerva",
        choices=("minerva", "llama70b", "hendrycks"),
        help="how answers are read from solutions (the reference's model/math_type)",
    )
    cu.add_argument(
        "--grouping",
        default="string",
        choices=("string", "math-verify"),
        help="votes group answers by their normalised string or by math-verify equivalence",
    )
    cu.add_argument(
        "--prm-scores",
        help="score JSONL (`score`'s output) with ids '<problem>/<solution>': PRM best-of-N",
    )
    cu.add_argument("--prm-aggregate", default="min", choices=("min", "product", "last", "mean"))
    cu.add_argument(
        "--prm-weighted",
        action="store_true",
        help="also weighted SC with the --prm-scores as votes (LaSeR-weighted SC for LaSeR's "
        "r_s), method 'prm-sc': exact where countable, else Monte-Carlo (exact mode)",
    )
    cu.add_argument("--max-samples", type=_positive, help="use each problem's first N samples")
    cu.add_argument("--max-verified", type=_positive, help="use the first N verified samples")
    cu.add_argument("--max-verifications", type=_positive, help="use each solution's first N")
    cu.add_argument("--seed", type=int, default=33, help="replay's per-problem seed")
    cu.add_argument("--output", required=True, help="out.json or out.csv")
    cu.set_defaults(func=cmd_curves)

    lc = sub.add_parser(
        "laser-cref",
        help="LaSeR's c_ref from a model's own traces: mean, spread, histogram of log pi(z_c)",
    )
    lc.add_argument(
        "--model",
        required=True,
        help="hub id or local directory: the policy before LaSeR training (c_ref stands for "
        "its log pi(z_c)), or any model to see its spread",
    )
    lc.add_argument("--input", required=True, help="its traces, any format the importer reads")
    lc.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    lc.add_argument("--split", default="")
    lc.add_argument("--step-splitter", default="paragraphs", choices=tuple(SPLITTERS))
    lc.add_argument(
        "--z-c",
        type=_token,
        default=None,
        help="the self-rewarding token, an id or a token text (default: the model family's)",
    )
    lc.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    lc.add_argument("--device", default=None, help="cpu, cuda (default: $STEPWISE_DEVICE or auto)")
    lc.add_argument("--dtype", default=None, help="float32, bfloat16 (default: bf16 on CUDA)")
    lc.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batch")
    lc.set_defaults(func=cmd_laser_cref)

    gr = sub.add_parser(
        "grounded",
        help="GroundedPRM step labels: a tree search whose steps local tools check",
    )
    gr.add_argument(
        "--problems",
        required=True,
        help="JSON list or JSONL: problem, answer or solution, optional id, level, "
        "global_objective, conditions",
    )
    gr.add_argument("--generator", required=True, help="openai:BASE_URL or hf:MODEL_PATH")
    gr.add_argument("--model", help="the served generator's name (openai completer)")
    gr.add_argument(
        "--judge",
        required=True,
        help="tool (the tool's result decides, no judge model), or openai:BASE_URL / "
        "hf:MODEL_PATH for an LLM judge",
    )
    gr.add_argument("--judge-model", help="the served judge's name (default: --model)")
    gr.add_argument("--selection", default="uct", choices=("uct", "released"))
    gr.add_argument("--seed", type=int, help="selection's seed, also sent to the completers")
    gr.add_argument("--temperature", type=float, default=1.0, help="the generator's (default 1.0)")
    gr.add_argument(
        "--judge-temperature", type=float, default=0.6, help="the judge's (default 0.6)"
    )
    gr.add_argument("--max-tokens", type=int)
    gr.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_option,
        metavar="KEY=VALUE",
        help="generator completer option: chat=true, max_in_flight=8, timeout_s=60, ...",
    )
    gr.add_argument(
        "--judge-option",
        action="append",
        default=[],
        type=parse_option,
        metavar="KEY=VALUE",
        help="judge completer option",
    )
    gr.add_argument(
        "--output",
        required=True,
        help="directory: trees.jsonl, steps.trl.jsonl, generative.jsonl (resumes what is there)",
    )
    gr.add_argument("--quiet", action="store_true", help="no line per problem")
    gr.set_defaults(func=cmd_grounded)

    from scoring.reward_service import add_service_arguments

    sv = sub.add_parser(
        "serve",
        help="a reward service for RL trainers: OpenRLHF, verl, TRL and native protocols",
    )
    sv.add_argument("--adapter", required=True, help="adapter name, e.g. qwen-prm")
    sv.add_argument("--model", help="hub id or local directory")
    sv.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_option,
        metavar="KEY=VALUE",
        help="adapter option, as for score",
    )
    sv.add_argument("--device", default=None, help="cpu, cuda (default: $STEPWISE_DEVICE or auto)")
    sv.add_argument("--dtype", default=None, help="float32, bfloat16 (default: bf16 on CUDA)")
    sv.add_argument(
        "--log-jsonl",
        help="append every scored rollout to this JSONL file, once per rollout (journal: "
        "LOG_JSONL.journal unless --log-journal says)",
    )
    add_service_arguments(sv)
    sv.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
