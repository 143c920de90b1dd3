"""``backend=vllm``: the PRM adapters scoring through a vLLM-style pooling server (a real
HTTP server process on loopback doing STEP pooling with the tiny real-layout model) give
the local scores to 1e-5; faults are retried or stop the run with a clear error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scoring.adapters import load_adapter
from scoring.adapters.vllm_pooling import PoolingError, pooler_config
from scoring.engine import score_traces
from scoring.options import OptionError
from scoring.types import Trace
from tests.scoring import pooling_server

TOL = 1e-5


@pytest.fixture(scope="module")
def shepherd_dir(tmp_path_factory) -> Path:
    from scoring.tiny import build_causal_lm, mistral_tokenizer

    return build_causal_lm(tmp_path_factory.mktemp("shepherd"), mistral_tokenizer(), "mistral")


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory) -> Path:
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    return build_causal_lm(tmp_path_factory.mktemp("rlhflow"), llama3_tokenizer(), "llama")


def _serve(model: Path, arch: str, config: dict):
    process, url = pooling_server.spawn(model, arch, config)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


# The server command lines of the module docstring, from each tokenizer as the model cards
# compute the ids, not from the client's own ``pooler_config``.
@pytest.fixture(scope="module")
def qwen_server(qwen_prm_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_prm_dir)
    config = {"pooling_type": "STEP", "step_tag_id": tokenizer.encode("<extra_0>")[0]}
    yield from _serve(qwen_prm_dir, "prm", config)


@pytest.fixture(scope="module")
def shepherd_server(shepherd_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shepherd_dir)
    config = {
        "pooling_type": "STEP",
        "step_tag_id": tokenizer.encode("ки")[-1],
        "returned_token_ids": tokenizer.encode("+ -")[1:],
    }
    yield from _serve(shepherd_dir, "lm", config)


@pytest.fixture(scope="module")
def rlhflow_server(rlhflow_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rlhflow_dir)
    plus, minus = tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    yield from _serve(
        rlhflow_dir, "lm", {"pooling_type": "STEP", "returned_token_ids": [plus, minus]}
    )


def _assert_remote_equals_local(name: str, model: Path, url: str, traces: list[Trace]) -> None:
    local = load_adapter(name, str(model), device="cpu")
    remote = load_adapter(name, str(model), backend="vllm", url=url)
    pooling_server.script(url)  # no faults; counts from zero
    expected = list(score_traces(local, traces, batch_tokens=100_000))
    got = list(score_traces(remote, traces, batch_tokens=100_000))
    assert [r.trace_id for r in got] == [t.id for t in traces]
    for want, have in zip(expected, got, strict=True):
        assert len(have.scores) == len(want.scores) > 0
        assert max(abs(a - b) for a, b in zip(want.scores, have.scores, strict=True)) < TOL
        assert (have.adapter, have.model) == (name, str(model))
    # constant outputs would let a wrong read-out position pass
    scores = [s for r in got for s in r.scores]
    assert max(scores) - min(scores) > 1e-3
    # all traces in one request: the engine's batch is the request's
    assert pooling_server.stats(url)["batches"] == [len(traces)]


def test_qwen_prm_through_vllm_equals_local(qwen_prm_dir, qwen_server, traces) -> None:
    _assert_remote_equals_local("qwen-prm", qwen_prm_dir, qwen_server, traces)


def test_math_shepherd_through_vllm_equals_local(shepherd_dir, shepherd_server, traces) -> None:
    _assert_remote_equals_local("math-shepherd", shepherd_dir, shepherd_server, traces)


def test_rlhflow_through_vllm_equals_local(rlhflow_dir, rlhflow_server, traces) -> None:
    _assert_remote_equals_local("rlhflow", rlhflow_dir, rlhflow_server, traces)


def test_the_documented_pooler_configs_are_the_adapters(
    qwen_prm_dir, shepherd_dir, rlhflow_dir
) -> None:
    qwen = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    shepherd = load_adapter("math-shepherd", str(shepherd_dir), device="cpu")
    rlhflow = load_adapter("rlhflow", str(rlhflow_dir), device="cpu")
    assert pooler_config(qwen) == ({"pooling_type": "STEP", "step_tag_id": qwen.separator_id}, 1)
    assert pooler_config(shepherd) == (
        {
            "pooling_type": "STEP",
            "step_tag_id": shepherd.tag_id,
            "returned_token_ids": [shepherd.good_id, shepherd.bad_id],
        },
        0,
    )
    assert pooler_config(rlhflow) == (
        {"pooling_type": "STEP", "returned_token_ids": [rlhflow.good_id, rlhflow.bad_id]},
        0,
    )


def test_a_500_then_success_is_retried(qwen_prm_dir, qwen_server, traces) -> None:
    local = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    remote = load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=qwen_server)
    remote.backoff_s = 0.01
    pooling_server.script(qwen_server, fail=1)
    got = list(score_traces(remote, traces, batch_tokens=100_000))
    expected = list(score_traces(local, traces, batch_tokens=100_000))
    for want, have in zip(expected, got, strict=True):
        assert max(abs(a - b) for a, b in zip(want.scores, have.scores, strict=True)) < TOL
    assert pooling_server.stats(qwen_server)["requests"] == 1  # after the 500


def test_a_request_that_times_out_is_retried(qwen_prm_dir, qwen_server, traces) -> None:
    import httpx

    remote = load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=qwen_server)
    remote.backoff_s = 0.01
    remote.client.timeout = httpx.Timeout(0.5)
    pooling_server.script(qwen_server, slow=1, delay=2.0)
    got = list(score_traces(remote, traces, batch_tokens=100_000))
    # without the retry the timeout would have stopped the run
    assert [len(r.scores) for r in got] == [len(t.steps) for t in traces]


def test_a_server_that_keeps_failing_stops_the_run_naming_url_and_status(
    qwen_prm_dir, qwen_server, traces
) -> None:
    remote = load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=qwen_server)
    remote.backoff_s = 0.01
    pooling_server.script(qwen_server, fail=remote.retries + 1)
    message = f"{qwen_server}/pooling answered 500: scripted failure (gave up after 4 attempts)"
    with pytest.raises(PoolingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(score_traces(remote, traces))


def test_a_server_that_does_not_answer_is_named(qwen_prm_dir, traces) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    remote = load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=url)
    remote.backoff_s = 0.01
    with pytest.raises(PoolingError, match=rf"{url}/pooling did not answer: .*gave up after 4"):
        list(score_traces(remote, traces))


def test_the_wrong_number_of_step_outputs_is_a_clear_error(
    qwen_prm_dir, qwen_server, traces
) -> None:
    remote = load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=qwen_server)
    pooling_server.script(qwen_server, drop_row=True)
    try:
        with pytest.raises(PoolingError) as raised:
            list(score_traces(remote, [traces[0]]))
    finally:
        pooling_server.script(qwen_server)
    assert str(raised.value) == (
        f"{qwen_server}/pooling sent 2 step outputs for input 0, which has 3 pooled "
        f"positions; start it with --pooler-config "
        f'\'{{"pooling_type": "STEP", "step_tag_id": {remote.adapter.separator_id}}}\''
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1:8000", "file:///etc/passwd", "127.0.0.1:8000", "http://169.254.169.254"],
)
def test_a_bad_url_is_refused(qwen_prm_dir, url) -> None:
    with pytest.raises(OptionError):
        load_adapter("qwen-prm", str(qwen_prm_dir), backend="vllm", url=url)


def test_an_unknown_backend_and_an_unpoolable_protocol_are_refused(
    qwen_prm_dir, rlhflow_dir
) -> None:
    with pytest.raises(ValueError, match="backend must be 'local' or 'vllm', not 'tgi'"):
        load_adapter("qwen-prm", str(qwen_prm_dir), backend="tgi", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"rlhflow \(protocol=processbench\) cannot score"):
        load_adapter(
            "rlhflow",
            str(rlhflow_dir),
            backend="vllm",
            url="http://127.0.0.1:1",
            protocol="processbench",
        )
