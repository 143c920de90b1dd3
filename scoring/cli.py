"""``python -m scoring score ...`` and ``python -m scoring evaluate ...``."""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from scoring.formats import FORMATS, ImportFormatError, read_scores, read_traces, write_scores
from scoring.metrics import (
    min_on_final_share,
    processbench_table,
    step_auroc,
    step_labels_from_first_error,
    tune_and_apply,
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
    from scoring.adapters import load_adapter
    from scoring.engine import score_traces

    try:
        traces = read_traces(
            args.input, args.format, split=args.split, step_splitter=args.step_splitter
        )
    except ImportFormatError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    options = dict(args.option)
    if args.adapter != "arithmetic-check":
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

    threshold = args.threshold
    if threshold.startswith("tune:"):
        split = threshold.removeprefix("tune:")
        if split not in by_split_scores:
            print(
                f"cannot tune on {split!r}: splits are {sorted(by_split_scores)}", file=sys.stderr
            )
            return 1
        tau, table = tune_and_apply(by_split_scores, by_split_labels, split)
        tau_note = f"tau = {tau:.2f} (tuned on {split})"
    else:
        tau = float(threshold)
        table = processbench_table(by_split_scores, by_split_labels, tau)
        tau_note = f"tau = {tau:g}"

    print(f"ProcessBench, first error = first step scored below tau; {tau_note}")
    print(
        f"{'split':<16}{'n_err':>6}{'n_cor':>6}{'acc_err':>9}{'acc_cor':>9}{'F1':>7}{'AUROC':>8}{'min@last':>10}"
    )
    for split, row in table.items():
        if split == "average":
            auc = final = ""
        else:
            labels = [
                step_labels_from_first_error(label, len(s))
                for s, label in zip(by_split_scores[split], by_split_labels[split], strict=True)
            ]
            auc = f"{step_auroc(by_split_scores[split], labels):.3f}"
            final = f"{min_on_final_share(by_split_scores[split]):.3f}"
        print(
            f"{split:<16}{row.n_err:>6}{row.n_cor:>6}{row.acc_err:>9.1f}{row.acc_cor:>9.1f}{row.f1:>7.1f}{auc:>8}{final:>10}"
        )
    if missing:
        print(f"({missing} gold traces had no scores and were skipped)", file=sys.stderr)
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
    evaluate.add_argument("--scores", required=True)
    evaluate.add_argument(
        "--gold", required=True, action="append", help="repeat for several splits"
    )
    evaluate.add_argument("--threshold", default="0.5", help="a number, or tune:SPLIT")
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
