"""The HTTP client of the native ``POST /v1/rewards``, with retries.

Where the service is: ``url`` or ``$STEPWISE_REWARD_URL`` (default
``http://127.0.0.1:8300``); its token: ``token`` or ``$STEPWISE_REWARD_TOKEN``. A request
that finds no service (it is restarting), times out, or gets a 502/503/504 is sent again
after a growing pause, up to ``retries`` times; the service keys each rollout on its content,
so a retried request is never logged twice. A 400 or a 500 (a model error) is an answer, not
a hiccup: :class:`RewardServiceError` at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8300"
URL_ENV = "STEPWISE_REWARD_URL"
TOKEN_ENV = "STEPWISE_REWARD_TOKEN"
RETRY_STATUSES = frozenset({502, 503, 504})


class RewardServiceError(RuntimeError):
    """The service refused the request (its status and JSON answer attached), or could not
    be reached after every retry (status 0)."""

    def __init__(self, message: str, status: int = 0, answer: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer = answer


class RewardClient:
    """``rewards(items)`` (blocking) and ``arewards(items)`` (async) post ``items`` (dicts
    with ``prompt``, ``response`` or ``steps``, and optionally ``ground_truth``, ``id``,
    ``training_step``) and return the service's answer."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        client: str = "native",
        timeout_s: float = 180.0,
        retries: int = 10,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self.client = client
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/rewards"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _body(self, items: list[dict[str, Any]], training_step: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"items": items, "client": self.client}
        if training_step is not None:
            body["training_step"] = training_step
        return body

    def _pause(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, 10.0)

    def rewards(self, items: list[dict[str, Any]], training_step: int | None = None) -> dict:
        import httpx

        body = self._body(items, training_step)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                answer = httpx.post(
                    self.endpoint, json=body, headers=self._headers(), timeout=self.timeout_s
                )
            except httpx.TransportError as error:
                last = error
            else:
                if answer.status_code not in RETRY_STATUSES:
                    return _answer(answer)
                last = RewardServiceError(f"{answer.status_code}", answer.status_code)
            if attempt < self.retries:
                time.sleep(self._pause(attempt))
        raise RewardServiceError(f"no answer from {self.endpoint}: {last}")

    async def arewards(self, items: list[dict[str, Any]], training_step: int | None = None) -> dict:
        import httpx

        body = self._body(items, training_step)
        last: Exception | None = None
        async with httpx.AsyncClient(timeout=self.timeout_s) as session:
            for attempt in range(self.retries + 1):
                try:
                    answer = await session.post(self.endpoint, json=body, headers=self._headers())
                except httpx.TransportError as error:
                    last = error
                else:
                    if answer.status_code not in RETRY_STATUSES:
                        return _answer(answer)
                    last = RewardServiceError(f"{answer.status_code}", answer.status_code)
                if attempt < self.retries:
                    await asyncio.sleep(self._pause(attempt))
        raise RewardServiceError(f"no answer from {self.endpoint}: {last}")


def _answer(response: Any) -> dict:
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text}
    if response.status_code != 200:
        raise RewardServiceError(
            f"{response.status_code}: {answer.get('field', '')} {answer.get('error', '')}".strip(),
            response.status_code,
            answer,
        )
    return answer
