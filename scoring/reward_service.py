"""The reward service: a PRM behind HTTP for RL trainers (``python -m scoring serve``).

Endpoints (Starlette on uvicorn):

- ``POST /v1/rewards``, the native protocol: ``{"items": [{"prompt", "response" | "steps",
  "ground_truth"?, "id"?, "training_step"?}], "training_step"?, "client"?}`` answered with,
  per item, the steps, step scores, step rewards, return, first error step and success, and
  the transform and its version. The verl and TRL clients (:mod:`scoring.reward_clients`)
  speak it.
- ``POST /get_reward``, OpenRLHF's remote reward protocol as its trainer sends and reads it
  (``openrlhf/utils/agent.py`` at commit 3c3be623, lines 322-355 send
  ``{"query", "prompts", "labels"}``; lines 289-296 read ``rewards``, ``scores`` and
  ``extra_logs``; ``openrlhf/trainer/ppo_utils/samples_generator.py`` lines 293-297 turn
  every ``extra_logs`` value into a tensor, so they are numbers only). The transform's name
  and version ride in a key of ``extra_logs`` (``transform/clip-delta/v1``: 1.0).
- ``GET /health`` and ``GET /metrics`` (Prometheus text).

Safety: the service binds loopback unless told otherwise, and bound elsewhere it needs a
token, sent as ``Authorization: Bearer TOKEN`` or as a path prefix ``/t/TOKEN/...`` for
clients that cannot send headers (OpenRLHF's ``--remote_rm_url`` is a bare URL). Bodies and
item counts are capped; a bad request gets a 400 naming the field; a model error gets a
500 and the service goes on serving.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from scoring import strict_json
from scoring.chat_queries import split_query
from scoring.engine import DEFAULT_BATCH_TOKENS
from scoring.reward_engine import (
    PROTOCOLS,
    ModelError,
    Reward,
    RewardEngine,
    RewardSettings,
    Rollout,
    RolloutWriter,
    steps_with_ends,
)
from scoring.rollout_journal import RolloutJournal
from scoring.steps import SPLITTERS

DEFAULT_PORT = 8300
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 1024
TOKEN_ENV = "STEPWISE_REWARD_TOKEN"
CPU_MAX_PADDING = 0.1


def default_max_padding(adapter: Any) -> float | None:
    """``--max-padding`` when the options leave it out: 0.1 for a model on a CPU, where a
    padded token costs what a real one does and a pass gains next to nothing from more
    rollouts (``bench/reward_service.py``: the service reaches about 0.9 of a bare batched
    call with it, about 0.65 without); no bound elsewhere, where a fuller pass is worth
    its padding."""
    device = getattr(adapter, "device", None)
    return CPU_MAX_PADDING if device is not None and str(device).split(":")[0] == "cpu" else None


class BadRequest(Exception):
    """A request the service cannot take: the HTTP status, the field at fault, why."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds the loopback interface only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _string(value: Any, field: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(field, "must be a string")
    return value


def _step(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(field, "must be a whole number >= 0")
    return value


def _items(value: Any, field: str, limit: int) -> list:
    if not isinstance(value, list):
        raise BadRequest(field, "must be a list")
    if len(value) > limit:
        raise BadRequest(field, f"holds {len(value)} items; at most {limit} per request")
    return value


def native_rollouts(body: Any, settings: RewardSettings, max_items: int) -> list[Rollout]:
    """The rollouts of a ``/v1/rewards`` body; a :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object")
    client = body.get("client", "native")
    if client not in PROTOCOLS or client == "openrlhf":
        raise BadRequest("client", "must be one of native, verl, trl")
    default_step = _step(body.get("training_step"), "training_step")
    splitter = SPLITTERS[settings.step_splitter]
    rollouts = []
    for i, item in enumerate(_items(body.get("items"), "items", max_items)):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(where, "must be an object")
        problem = _string(item.get("prompt"), f"{where}.prompt")
        response = item.get("response")
        steps = item.get("steps")
        if (response is None) == (steps is None):
            raise BadRequest(where, "needs either response or steps")
        ends = None
        if response is not None:
            response = _string(response, f"{where}.response")
            split, ends = steps_with_ends(response, splitter)
            steps = split
        elif not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise BadRequest(f"{where}.steps", "must be a list of strings")
        client_id = item.get("id")
        if client_id is not None and not isinstance(client_id, str | int):
            raise BadRequest(f"{where}.id", "must be a string or a number")
        step = _step(item.get("training_step"), f"{where}.training_step")
        rollouts.append(
            Rollout(
                problem=problem,
                steps=tuple(steps),
                response=response,
                step_ends=tuple(ends) if ends else None,
                ground_truth=_string(item.get("ground_truth"), f"{where}.ground_truth", False),
                training_step=step if step is not None else default_step,
                client_id=None if client_id is None else str(client_id),
                protocol=client,
            )
        )
    return rollouts


def openrlhf_rollouts(body: Any, settings: RewardSettings, max_items: int) -> list[Rollout]:
    """The rollouts of an OpenRLHF ``/get_reward`` body: each query split into the problem
    (the prompt's user turn) and the response (:func:`scoring.chat_queries.split_query`).
    ``labels`` may be missing or hold empty strings (no ``--label_key``): no success term."""
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object")
    queries = _items(body.get("query"), "query", max_items)
    prompts = _items(body.get("prompts"), "prompts", max_items)
    labels = body.get("labels")
    labels = [None] * len(queries) if labels is None else _items(labels, "labels", max_items)
    if len(prompts) != len(queries):
        raise BadRequest("prompts", f"holds {len(prompts)} prompts for {len(queries)} queries")
    if len(labels) != len(queries):
        raise BadRequest("labels", f"holds {len(labels)} labels for {len(queries)} queries")
    splitter = SPLITTERS[settings.step_splitter]
    rollouts = []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        query = _string(query, f"query[{i}]")
        prompt = _string(prompt, f"prompts[{i}]")
        if label is not None and not isinstance(label, str):
            label = json.dumps(label)  # a numeric answer column
        try:
            problem, response = split_query(query, prompt)
        except ValueError as error:
            raise BadRequest(f"query[{i}]", f"{error} (prompts[{i}])") from None
        steps, ends = steps_with_ends(response, splitter)
        rollouts.append(
            Rollout(
                problem=problem,
                steps=tuple(steps),
                response=response,
                step_ends=tuple(ends) if ends else None,
                ground_truth=label or None,
                protocol="openrlhf",
            )
        )
    return rollouts


def native_answer(rewards: list[Reward], engine: RewardEngine) -> dict[str, Any]:
    s = engine.settings
    return {
        "transform": s.label,
        "parameters": {**s.parameters, "success_weight": s.success_weight},
        "model": engine.model_name,
        "items": [
            {
                "steps": list(r.rollout.steps),
                "step_ends": list(r.rollout.step_ends) if r.rollout.step_ends else None,
                "step_scores": list(r.step_scores),
                "step_rewards": list(r.step_rewards),
                "return": r.total,
                "first_error_step": r.first_error_step,
                "success": r.success,
            }
            for r in rewards
        ],
    }


def openrlhf_answer(rewards: list[Reward], engine: RewardEngine) -> dict[str, Any]:
    """``rewards`` and ``scores`` are the returns (as OpenRLHF's own ``serve_rm`` answers
    both); ``extra_logs`` holds per-sample numbers the trainer logs: the lowest step score,
    the step count, success (1, 0, or -1 with no ground truth) and the transform's name."""
    returns = [r.total for r in rewards]
    return {
        "rewards": returns,
        "scores": returns,
        "extra_logs": {
            "prm_min": [min(r.step_scores) if r.step_scores else 0.0 for r in rewards],
            "n_steps": [float(len(r.step_scores)) for r in rewards],
            "success": [-1.0 if r.success is None else float(r.success) for r in rewards],
            f"transform/{engine.settings.label}": [1.0] * len(rewards),
        },
    }


def _error(status: int, field: str | None, message: str) -> Any:
    from starlette.responses import JSONResponse

    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _read_json(request: Any, max_body_bytes: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise BadRequest("body", f"is {length} bytes; at most {max_body_bytes}", 413)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise BadRequest("body", f"is over {max_body_bytes} bytes", 413)
        chunks.append(chunk)
    try:
        return strict_json.loads(b"".join(chunks))
    except strict_json.NotJSON as error:
        raise BadRequest("body", f"is not JSON: {error}") from None


def build_app(
    engine: RewardEngine,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Any:
    """The ASGI app serving ``engine``. With a ``token``, every path but ``/health`` needs
    it (a Bearer header or a ``/t/TOKEN`` prefix)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    def endpoint(
        name: str,
        parse: Callable[[Any, RewardSettings, int], list[Rollout]],
        answer: Callable[[list[Reward], RewardEngine], dict[str, Any]],
    ) -> Callable:
        async def handle(request: Any) -> Any:
            started = time.perf_counter()
            try:
                body = await _read_json(request, max_body_bytes)
                rollouts = parse(body, engine.settings, max_items)
                response = JSONResponse(answer(await engine.score(rollouts), engine))
            except BadRequest as error:
                response = _error(error.status, error.field, error.message)
            except ModelError as error:
                response = _error(500, None, f"model error: {error}")
            except Exception as error:  # anything else: still a JSON answer, still serving
                response = _error(500, None, f"internal error: {type(error).__name__}: {error}")
            engine.metrics.request(name, response.status_code, time.perf_counter() - started)
            return response

        return handle

    async def health(request: Any) -> Any:
        return JSONResponse(
            {"status": "ok", "model": engine.model_name, "transform": engine.settings.label}
        )

    async def metrics(request: Any) -> Any:
        return PlainTextResponse(
            engine.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @asynccontextmanager
    async def lifespan(app: Any):
        await engine.start()
        yield
        await engine.close()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route(
                "/v1/rewards",
                endpoint("v1/rewards", native_rollouts, native_answer),
                methods=["POST"],
            ),
            Route(
                "/get_reward",
                endpoint("get_reward", openrlhf_rollouts, openrlhf_answer),
                methods=["POST"],
            ),
        ],
        lifespan=lifespan,
    )
    return TokenGate(app, token) if token else app


class TokenGate:
    """ASGI middleware: a request needs ``Authorization: Bearer TOKEN`` or a path starting
    ``/t/TOKEN/`` (taken off before routing); ``/health`` is open. Compared in constant
    time."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.prefix = f"/t/{token}"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        if path == "/health":
            return await self.app(scope, receive, send)
        if path.startswith("/t/"):
            given, _, rest = path[3:].partition("/")
            if hmac.compare_digest(given.encode(), self.token):
                scope = {**scope, "path": "/" + rest, "raw_path": ("/" + rest).encode()}
                return await self.app(scope, receive, send)
        else:
            headers = dict(scope.get("headers") or [])
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self.token):
                return await self.app(scope, receive, send)
        response = _error(401, "authorization", "a valid token is required")
        await response(scope, receive, send)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``python -m scoring serve`` and ``manage.py serve_rewards``."""
    from scoring.rewards import TRANSFORMS

    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--token",
        default=None,
        help=f"required when --host is not loopback (default: ${TOKEN_ENV}); clients send "
        "'Authorization: Bearer TOKEN' or use the path prefix /t/TOKEN/",
    )
    parser.add_argument("--transform", default="min", choices=sorted(TRANSFORMS))
    parser.add_argument("--eta", type=float, help="clip and clip-delta's threshold")
    parser.add_argument("--temperature", type=float, help="pure-min's temperature (0.1)")
    parser.add_argument(
        "--success-weight",
        type=float,
        default=1.0,
        help="added at the last step when the answer matches the ground truth",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="first error step below it (0.5)"
    )
    parser.add_argument("--step-splitter", default="paragraphs", choices=tuple(SPLITTERS))
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="padded tokens per pass (16384)"
    )
    parser.add_argument(
        "--max-padding",
        type=float,
        default=None,
        help="padding tokens a pass may carry, as a share of its real ones; 0.1 cuts a pass "
        "before it is 10%% padding (default: 0.1 for a model on a CPU, else inf: no bound but "
        "--batch-tokens)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long an idle model waits for more requests to batch with",
    )
    parser.add_argument(
        "--max-batch-items", type=int, default=512, help="rollouts per pass at most"
    )
    parser.add_argument(
        "--no-batching", action="store_true", help="one model call per request (for comparison)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS)
    parser.add_argument("--grade-workers", type=int, default=2, help="math-verify processes")
    parser.add_argument(
        "--log-journal",
        help="directory of the rollout journal: each logged rollout is on disk there before "
        "its answer goes out, and a restart replays it into the log (one service each)",
    )


def settings_from_args(
    args: argparse.Namespace,
    source: str,
    threshold: float = 0.5,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> RewardSettings:
    """The settings the options give; ``threshold`` and ``batch_tokens`` where the options
    leave them out (a registered scorer's own)."""
    parameters = {}
    if args.eta is not None:
        parameters["eta"] = args.eta
    if args.temperature is not None:
        parameters["temperature"] = args.temperature
    return RewardSettings(
        transform=args.transform,
        parameters=parameters,
        success_weight=args.success_weight,
        threshold=threshold if args.threshold is None else args.threshold,
        step_splitter=args.step_splitter,
        batch_tokens=batch_tokens if args.batch_tokens is None else args.batch_tokens,
        max_padding=args.max_padding,
        batching=not args.no_batching,
        max_wait_s=args.max_wait_ms / 1000,
        max_batch_items=args.max_batch_items,
        grade_workers=args.grade_workers,
        source=source,
    )


def serve(
    adapter: Any,
    settings: RewardSettings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    log: RolloutWriter | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    journal: str | Path | None = None,
) -> None:
    """Serve until interrupted; with a ``log`` and a ``journal`` directory, every answered
    rollout reaches the log, kill or no kill (:mod:`scoring.rollout_journal`). A
    ValueError when bound off loopback without a token, or when the transform cannot run
    with ``settings``; ``JournalInUse`` when another service holds the journal."""
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ValueError(
            f"--host {host} is reachable from other machines: give --token (or ${TOKEN_ENV})"
        )
    if not (math.isfinite(settings.max_wait_s) and settings.max_wait_s >= 0):
        raise ValueError("--max-wait-ms must be a number >= 0")
    if settings.max_padding is None:
        settings = replace(settings, max_padding=default_max_padding(adapter))
    if settings.max_padding is not None and not settings.max_padding >= 0:
        raise ValueError("--max-padding must be a number >= 0 (inf: unbounded)")
    if journal is not None and log is None:
        raise ValueError("--log-journal needs a rollout log to drain into")
    engine = RewardEngine(
        adapter, settings, log=log, journal=RolloutJournal(journal) if journal else None
    )
    app = build_app(engine, token, max_body_bytes, max_items)
    print(
        f"serving {engine.model_name or settings.source} with {settings.label} on "
        f"http://{host}:{port} (batching {'on' if settings.batching else 'off'})",
        file=sys.stderr,
        flush=True,
    )
    # Trainers keep connections open between rollouts: a short keep-alive races their reuse.
    uvicorn.run(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=60
    )
