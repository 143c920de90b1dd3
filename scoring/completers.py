"""Completers for Monte-Carlo rollouts: an OpenAI-compatible server, or local transformers.

Both take :class:`scoring.montecarlo.Prompt` objects and return N completions per prompt
(:class:`scoring.montecarlo.Rollouts`). Selected by a spec string, as the CLI takes it:
``openai:BASE_URL`` (a vLLM or SGLang server; ``--model`` names the served model) or
``hf:MODEL_PATH``.

- :class:`OpenAICompleter` sends one request per prompt with ``n`` completions, many in
  flight at once (a thread pool of ``max_in_flight``), each with a timeout; connection
  errors, timeouts, 429 and 5xx answers are retried with exponential backoff, and when the
  retries run out, or on any other error status, :class:`CompleterError` carries the
  server's own message. ``/v1/completions`` by default; ``chat=True`` uses
  ``/v1/chat/completions`` with the prefix as an assistant turn to continue (vLLM's
  ``continue_final_message``). Every sampling parameter is sent, so nothing comes from
  the served model's ``generation_config.json``.
- :class:`TransformersCompleter`: batched ``model.generate`` with left padding and
  ``num_return_sequences=n``, bf16 on CUDA (``scoring.device``), torch imported lazily.

Both also have ``sample(prompt, n, top_logprobs=None)``: the n completions of one prompt
as :class:`Completion` s, each with its own token count and, when asked, the most likely
tokens and their log-probabilities at every position (what a generative verifier's
p(yes) is read from). A server is asked for ``logprobs`` (``/v1/completions``: the
number; chat: ``logprobs: true`` with ``top_logprobs``), as ``sc-genrm-scaling`` asks its
server (``generate_solutions.py:146``, ``generate_verifications.py:217``); a choice's
token count is the length of its log-probability list, or, from a server that sends
none, the request's ``completion_tokens`` shared evenly.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scoring.montecarlo import Prompt, Rollouts


class CompleterError(RuntimeError):
    """The completer could not get completions; the message says why (the server's words)."""


@dataclass(frozen=True)
class Sampling:
    """What every rollout is sampled with. Math-Shepherd and OmegaPRM sample at a
    temperature near 1 so that rollouts differ; ``seed`` makes a server's run repeatable."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)


RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, the tokens it generated, and per generated
    position ``{token text: log-probability}`` of the sampled token and the most likely
    others (None when they were not asked for or not given)."""

    text: str
    tokens: int
    top_logprobs: tuple[dict[str, float], ...] | None = None
    # The generated token ids, where the completer has them (a local model).
    token_ids: tuple[int, ...] | None = None


def _even_shares(total: int, n: int) -> list[int]:
    """``total`` tokens over ``n`` completions, the remainder to the first ones."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _completions_logprobs(logprobs: Any) -> tuple[dict[str, float], ...] | None:
    """``/v1/completions``' ``{tokens, token_logprobs, top_logprobs}`` as one dict per
    position, the sampled token's own log-probability included (vLLM includes it too)."""
    if not logprobs or logprobs.get("tokens") is None:
        return None
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    positions = []
    for token, logprob, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], tops, strict=True
    ):
        position = dict(top or {})
        if logprob is not None:
            position.setdefault(token, float(logprob))
        positions.append(position)
    return tuple(positions)


def _chat_logprobs(logprobs: Any) -> tuple[dict[str, float], ...] | None:
    """Chat's ``{content: [{token, logprob, top_logprobs: [{token, logprob}]}]}`` likewise."""
    if not logprobs or logprobs.get("content") is None:
        return None
    positions = []
    for entry in logprobs["content"]:
        position = {top["token"]: float(top["logprob"]) for top in entry.get("top_logprobs") or ()}
        position.setdefault(entry["token"], float(entry["logprob"]))
        positions.append(position)
    return tuple(positions)


class OpenAICompleter:
    """Completions from an OpenAI-compatible server at ``base_url`` (ending in ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        sampling: Sampling = Sampling(),
        *,
        chat: bool = False,
        api_key: str = "EMPTY",
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_in_flight: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.sampling = sampling
        self.chat = chat
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_in_flight = max_in_flight
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"

    def complete(self, prompts: Sequence[Prompt], n: int) -> list[Rollouts]:
        """All prompts at once, up to ``max_in_flight`` requests in flight; answers in order.
        The first request that fails for good raises (the others still finish)."""
        if len(prompts) == 1:
            return [self._request(prompts[0], n)]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="rollout")
        return list(self._pool.map(lambda prompt: self._request(prompt, n), prompts))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def body(self, prompt: Prompt, n: int) -> dict[str, Any]:
        s = self.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if not self.chat:
            body["prompt"] = prompt.text
            return body
        user = prompt.text.removesuffix(prompt.prefix) if prompt.prefix else prompt.text
        body["messages"] = [{"role": "user", "content": user}]
        if prompt.prefix:
            # vLLM continues the assistant's last message instead of starting a new turn.
            body["messages"].append({"role": "assistant", "content": prompt.prefix})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def _request(self, prompt: Prompt, n: int) -> Rollouts:
        return self._parse(self._post(self.body(prompt, n)), n)

    def sample(self, prompt: Prompt, n: int, top_logprobs: int | None = None) -> list[Completion]:
        """The n completions of ``prompt``, each with its token count and, with
        ``top_logprobs``, that many most likely tokens per position besides the sampled
        one (one request; failures as :meth:`complete`)."""
        body = self.body(prompt, n)
        if self.chat:
            body["logprobs"] = True
            body["top_logprobs"] = top_logprobs or 0
        else:
            body["logprobs"] = top_logprobs or 0
        payload = self._post(body)
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            if self.chat:
                texts = [c["message"]["content"] or "" for c in choices]
                positions = [_chat_logprobs(c.get("logprobs")) for c in choices]
            else:
                texts = [c["text"] or "" for c in choices]
                positions = [_completions_logprobs(c.get("logprobs")) for c in choices]
        except (KeyError, TypeError, ValueError) as error:
            raise CompleterError(f"{self.url} sent an unexpected answer: {error!r}") from None
        if len(texts) != n:
            raise CompleterError(f"{self.url} sent {len(texts)} completions, {n} were asked for")
        total = int((payload.get("usage") or {}).get("completion_tokens") or 0)
        shares = _even_shares(total, n)
        return [
            Completion(
                text,
                len(lp) if lp is not None else shares[i],
                lp if top_logprobs else None,
            )
            for i, (text, lp) in enumerate(zip(texts, positions, strict=True))
        ]

    def sample_all(
        self, prompts: Sequence[Prompt], n: int, top_logprobs: int | None = None
    ) -> list[list[Completion]]:
        """:meth:`sample` for every prompt, up to ``max_in_flight`` requests in flight;
        answers in order."""
        if len(prompts) == 1:
            return [self.sample(prompts[0], n, top_logprobs)]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="rollout")
        return list(self._pool.map(lambda prompt: self.sample(prompt, n, top_logprobs), prompts))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url,
                data=data,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.api_key}",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                last_error = f"{self.url} answered {error.code}: {_server_message(error)}"
                if error.code not in RETRY_STATUSES:
                    raise CompleterError(last_error) from None
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                last_error = f"{self.url} did not answer: {reason}"
                continue
        raise CompleterError(f"{last_error} (gave up after {self.retries + 1} attempts)")

    def _parse(self, payload: dict[str, Any], n: int) -> Rollouts:
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            if self.chat:
                texts = tuple(c["message"]["content"] or "" for c in choices)
            else:
                texts = tuple(c["text"] or "" for c in choices)
        except (KeyError, TypeError) as error:
            raise CompleterError(f"{self.url} sent an unexpected answer: {error!r}") from None
        if len(texts) != n:
            raise CompleterError(f"{self.url} sent {len(texts)} completions, {n} were asked for")
        tokens = int((payload.get("usage") or {}).get("completion_tokens") or 0)
        return Rollouts(texts, tokens)


def _server_message(error: urllib.error.HTTPError) -> str:
    """The error text a server sent (OpenAI's ``{"error": {"message": ...}}``, vLLM's
    ``{"message": ...}``, or the raw body), cut to a readable length."""
    raw = error.read(4096).decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.strip() or error.reason
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return raw.strip()


class TransformersCompleter:
    """Local sampling with ``model.generate``: prompts in batches of ``batch_size``, left
    padded, ``num_return_sequences=n``; bf16 on CUDA, fp32 on CPU."""

    def __init__(
        self,
        path: str,
        sampling: Sampling = Sampling(),
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 8,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from scoring.adapters.base import resolve_device_dtype

        device, dtype = resolve_device_dtype(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # generation continues at the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.sampling = sampling
        self.batch_size = batch_size

    def complete(self, prompts: Sequence[Prompt], n: int) -> list[Rollouts]:
        import torch

        s = self.sampling
        if s.seed is not None:
            torch.manual_seed(s.seed)
        sample = s.temperature > 0
        if n > 1 and not sample:
            raise ValueError(f"n={n} greedy completions would all be the same: set temperature > 0")
        out: list[Rollouts] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [p.text for p in prompts[start : start + self.batch_size]]
            encoded = self.tokenizer(batch, return_tensors="pt", padding=True).to(
                self.model.device
            )  # (B, T)
            with torch.inference_mode():
                generated = self.model.generate(
                    **encoded,
                    do_sample=sample,
                    temperature=s.temperature if sample else None,
                    top_p=s.top_p if sample else None,
                    top_k=None,
                    num_return_sequences=n,
                    max_new_tokens=s.max_tokens,
                    stop_strings=list(s.stop) or None,
                    tokenizer=self.tokenizer if s.stop else None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )  # (B * n, T + new), each prompt's n sequences together
            new = generated[:, encoded["input_ids"].shape[1] :]
            counts = (new != self.tokenizer.pad_token_id).sum(dim=1).tolist()
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i in range(len(batch)):
                rows = range(i * n, (i + 1) * n)
                out.append(Rollouts(tuple(texts[r] for r in rows), sum(counts[r] for r in rows)))
        return out

    def sample(self, prompt: Prompt, n: int, top_logprobs: int | None = None) -> list[Completion]:
        """The n completions of one prompt, each with its own token count (up to its
        first pad) and, with ``top_logprobs``, the sampled token and the ``top_logprobs``
        most likely ones per position from the model's raw logits (as vLLM reports them),
        each token decoded on its own."""
        import torch

        s = self.sampling
        if s.seed is not None:
            torch.manual_seed(s.seed)
        sample = s.temperature > 0
        if n > 1 and not sample:
            raise ValueError(f"n={n} greedy completions would all be the same: set temperature > 0")
        encoded = self.tokenizer([prompt.text], return_tensors="pt").to(self.model.device)  # (1, T)
        with torch.inference_mode():
            out = self.model.generate(
                **encoded,
                do_sample=sample,
                temperature=s.temperature if sample else None,
                top_p=s.top_p if sample else None,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=s.max_tokens,
                stop_strings=list(s.stop) or None,
                tokenizer=self.tokenizer if s.stop else None,
                pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_logits=bool(top_logprobs),
            )
        new = out.sequences[:, encoded["input_ids"].shape[1] :]  # (n, new)
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        completions = []
        for row in range(n):
            ids = new[row].tolist()
            # generated tokens: up to and including the first EOS, without the padding after
            length = next((i + 1 for i, t in enumerate(ids) if t == eos), None)
            if length is None:
                length = next((i for i, t in enumerate(ids) if t == pad), len(ids))
            positions = None
            if top_logprobs:
                positions = []
                for i in range(length):
                    logprobs = torch.log_softmax(out.logits[i][row].float(), dim=-1)  # (V,)
                    top = torch.topk(logprobs, top_logprobs)
                    position: dict[str, float] = {}
                    for t, v in zip(top.indices.tolist(), top.values.tolist(), strict=True):
                        # tokens that decode alike (byte pieces) keep the likelier's value
                        position.setdefault(self.tokenizer.decode([t]), float(v))
                    position.setdefault(self.tokenizer.decode([ids[i]]), float(logprobs[ids[i]]))
                    positions.append(position)
                positions = tuple(positions)
            text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
            completions.append(Completion(text, length, positions, tuple(ids[:length])))
        return completions

    def sample_all(
        self, prompts: Sequence[Prompt], n: int, top_logprobs: int | None = None
    ) -> list[list[Completion]]:
        """:meth:`sample` for each prompt in turn."""
        return [self.sample(prompt, n, top_logprobs) for prompt in prompts]


def load_completer(spec: str, model: str | None = None, **options: Any) -> Any:
    """A completer from a spec: ``openai:BASE_URL`` (``model`` = the served name) or
    ``hf:PATH``. ``options``: the :class:`Sampling` fields, and the completer's own
    (``chat``, ``timeout_s``, ``retries``, ``max_in_flight``; ``device``, ``batch_size``)."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(f"expected openai:BASE_URL or hf:MODEL_PATH, got {spec!r}")
    sampling_keys = {"temperature", "top_p", "max_tokens", "seed", "stop"}
    sampling_options = {k: options.pop(k) for k in list(options) if k in sampling_keys}
    if isinstance(sampling_options.get("stop"), str):
        sampling_options["stop"] = (sampling_options["stop"],)
    elif "stop" in sampling_options:
        sampling_options["stop"] = tuple(sampling_options["stop"])
    sampling = Sampling(**sampling_options)
    if kind == "openai":
        if not model:
            raise ValueError("an openai completer needs the served model's name (--model)")
        return OpenAICompleter(target, model, sampling, **options)
    if kind == "hf":
        return TransformersCompleter(target, sampling, **options)
    raise ValueError(f"unknown completer {kind!r}; use openai:BASE_URL or hf:MODEL_PATH")
