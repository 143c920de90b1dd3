"""``backend=vllm``: the PRM adapters' forward pass on a vLLM pooling server.

``--option backend=vllm --option url=http://HOST:8000`` on ``qwen-prm``, ``math-shepherd``
or ``rlhflow`` (``protocol=card``) keeps the adapter's own input: the text it renders and
the token ids it encodes for local scoring. Those ids go to the server's ``POST /pooling``
(``{"input": [[ids], ...], "task": "token_classify", "encoding_format": "float"}``,
one request per batch of traces that ``score_traces`` plans under ``--batch-tokens``), and
the answer's ``data[i].data`` holds the rows of STEP pooling: per pooled token, the
softmax over two labels. The read-out is then the local one (``gather_rows`` at the
adapter's positions), so the scores equal the local model's.

Token ids, not text, because the server would tokenize text its own way
(``add_special_tokens`` defaults to true there: a second BOS on RLHFlow's chat, which
already starts with one). Only the tokenizer loads here (``--model`` is the hub id or the
path the tokenizer comes from); the weights stay on the server.

Written against vLLM v0.15.0: ``vllm/entrypoints/pooling/pooling/protocol.py``
(``PoolingCompletionRequest``: ``input``, ``task``; ``PoolingResponse``: ``data[i].index``,
``data[i].data``) and ``StepPool`` in ``vllm/model_executor/layers/pooler/tokwise/methods.py``
(keep the ``returned_token_ids`` columns, then the rows whose token is ``step_tag_id``;
the classifier head then applies its softmax). Servers, one per model:

- ``qwen-prm`` (``Qwen2ForProcessRewardModel``: the 2-logit head, a row is
  [p(neg), p(pos)] at each ``<extra_0>``, read at index 1)::

    vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "step_tag_id": 151651}'

- ``math-shepherd`` (``MistralForCausalLM`` pooled over its LM logits: a row is
  [p(+), p(-)] over the ``+``/``-`` logits at each ``ки``, read at index 0)::

    vllm serve peiyi9979/math-shepherd-mistral-7b-prm --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "step_tag_id": 12902, "returned_token_ids": [648, 387]}'

- ``rlhflow`` ``card`` (the read-out is the token before each assistant ``+``, which no
  single tag id marks: no ``step_tag_id``, so every token's [p(+), p(-)] comes back and
  the adapter's positions pick the steps' rows)::

    vllm serve RLHFlow/Llama3.1-8B-PRM-Deepseek-Data --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "returned_token_ids": [10, 12]}'

The ids are each checkpoint's (``pooler_config(adapter)`` computes them from the
tokenizer, and an error about the server's answer quotes them). ``rlhflow`` under
``processbench`` reads the greedy token over the whole vocabulary, which pooling does not
return: refused.

Connection errors, timeouts, 408/429 and 5xx answers are retried with exponential backoff;
any other status, or an answer with the wrong number of rows, stops the run with a
:class:`PoolingError` naming the URL, the status and the server's message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from scoring.adapters.base import CARD, Encoded, gather_rows, load_tokenizer
from scoring.options import check_server_url

TASK = "token_classify"
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
# Each row is a softmax over two labels; a server pooling hidden states (a pooler config
# without ``returned_token_ids`` on an LM) sends rows that are not, and must not score.
ROW_SUM_TOLERANCE = 1e-3


class PoolingError(RuntimeError):
    """The pooling server could not score a batch; the message names the URL and why."""


def pooler_config(adapter: Any) -> tuple[dict[str, Any], int]:
    """(the ``--pooler-config`` the server needs for ``adapter``, the row index of
    P(step correct))."""
    if adapter.name == "qwen-prm":
        return {"pooling_type": "STEP", "step_tag_id": adapter.separator_id}, 1
    if adapter.name == "math-shepherd":
        config = {"pooling_type": "STEP", "step_tag_id": adapter.tag_id}
        return {**config, "returned_token_ids": [adapter.good_id, adapter.bad_id]}, 0
    if adapter.name == "rlhflow" and adapter.protocol == CARD:
        return {"pooling_type": "STEP", "returned_token_ids": [adapter.good_id, adapter.bad_id]}, 0
    raise ValueError(
        f"{adapter.name} (protocol={adapter.protocol}) cannot score through vLLM pooling; "
        "use backend=local"
    )


def load(cls: Any, path: str, backend: str, url: str, protocol: str = CARD) -> VLLMPooling:
    """``cls``'s adapter on the tokenizer at ``path`` (no weights), scoring through the
    server at ``url``. ``backend`` must be ``vllm``."""
    if backend != "vllm":
        raise ValueError(f"backend must be 'local' or 'vllm', not {backend!r}")
    check_server_url(url)
    return VLLMPooling(cls(None, load_tokenizer(path), model_name=path, protocol=protocol), url)


class VLLMPooling:
    """An adapter whose ``forward`` runs on a vLLM pooling server; ``encode`` and the
    read-out positions are the wrapped adapter's."""

    device = "cpu"

    def __init__(
        self,
        adapter: Any,
        url: str,
        *,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        import httpx

        self.adapter = adapter
        self.name = adapter.name
        self.model_name = adapter.model_name
        self.pad_id = adapter.pad_id
        self.config, self.label = pooler_config(adapter)
        self.step_tag_id: int | None = self.config.get("step_tag_id")
        self.url = url.rstrip("/") + "/pooling"
        self.retries = retries
        self.backoff_s = backoff_s
        self.client = httpx.Client(timeout=timeout_s)

    def encode(self, trace: Any) -> Encoded:
        return self.adapter.encode(trace)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        """(B, T) right-padded ids -> (B, T): P(step correct) at every pooled position
        (the step tags, or every token without a tag), 0 elsewhere."""
        import torch

        sequences = [
            row[: int(n)].tolist()
            for row, n in zip(input_ids, attention_mask.sum(dim=1), strict=True)
        ]
        answers = self.pool(sequences)
        output = torch.zeros(input_ids.shape, dtype=torch.float32)  # (B, T)
        for b, (sequence, rows) in enumerate(zip(sequences, answers, strict=True)):
            pooled = self.pooled_positions(sequence)
            output[b, pooled] = torch.tensor([row[self.label] for row in rows])
        return output

    def read(self, output: Any, encoded: Encoded) -> tuple[list[float], None]:
        return gather_rows(output, encoded.positions), None

    def pooled_positions(self, sequence: Sequence[int]) -> list[int]:
        """The positions whose rows STEP pooling returns, in order."""
        if self.step_tag_id is None:
            return list(range(len(sequence)))
        return [i for i, token in enumerate(sequence) if token == self.step_tag_id]

    def pool(self, sequences: list[list[int]]) -> list[list[list[float]]]:
        """The server's rows for each sequence, checked against what the pooler config
        must give: one row of two probabilities per pooled position."""
        payload = self._post({"input": sequences, "task": TASK, "encoding_format": "float"})
        try:
            items = sorted(payload["data"], key=lambda item: item["index"])
            answers = [item["data"] for item in items]
        except (KeyError, TypeError) as error:
            raise PoolingError(f"{self.url} sent an unexpected answer: {error!r}") from None
        if len(answers) != len(sequences):
            raise PoolingError(
                f"{self.url} sent {len(answers)} outputs for {len(sequences)} inputs"
            )
        expect = f"start it with --pooler-config '{json.dumps(self.config)}'"
        for k, (sequence, rows) in enumerate(zip(sequences, answers, strict=True)):
            wanted = len(self.pooled_positions(sequence))
            if not isinstance(rows, list) or len(rows) != wanted:
                got = len(rows) if isinstance(rows, list) else repr(rows)[:40]
                raise PoolingError(
                    f"{self.url} sent {got} step outputs for input {k}, which has {wanted} "
                    f"pooled positions; {expect}"
                )
            for row in rows:
                if (
                    not isinstance(row, list)
                    or len(row) != 2
                    or abs(sum(row) - 1.0) > ROW_SUM_TOLERANCE
                ):
                    raise PoolingError(
                        f"{self.url} sent {str(row)[:60]} where two label probabilities "
                        f"belong; {expect}"
                    )
        return answers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TransportError as error:  # refused, reset, timed out
                last_error = f"{self.url} did not answer: {error!r}"
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise PoolingError(f"{self.url} sent an answer that is not JSON") from None
            last_error = f"{self.url} answered {response.status_code}: {_message(response)}"
            if response.status_code not in RETRY_STATUSES:
                raise PoolingError(last_error)
        raise PoolingError(f"{last_error} (gave up after {self.retries + 1} attempts)")


def _message(response: Any) -> str:
    """vLLM's ``{"error": {"message": ...}}`` (or ``{"message": ...}``), else the raw
    body, cut to a readable length."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500].strip() or response.reason_phrase
    inner = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(inner, dict) and inner.get("message"):
        return str(inner["message"])[:500]
    return str(inner)[:500]
