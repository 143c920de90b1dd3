"""The value rules of job options (``scoring.options``), which the command line and the
web app share: each bad value the probe found is refused with its option named."""

from __future__ import annotations

import pytest

from scoring.cli import main
from scoring.options import (
    COMPLETER_OPTIONS,
    SCORER_RUN_OPTIONS,
    TRAIN_OPTIONS,
    OptionError,
    check_completer,
    check_model_location,
    check_options,
    check_server_url,
)
from tests.factories import PROCESSBENCH_GSM8K


@pytest.mark.parametrize(
    ("options", "rules", "named"),
    [
        ({"timeout_s": -1}, COMPLETER_OPTIONS, "timeout_s"),
        ({"timeout_s": 0}, COMPLETER_OPTIONS, "timeout_s"),
        ({"max_in_flight": 0}, COMPLETER_OPTIONS, "max_in_flight"),
        ({"retries": -2}, COMPLETER_OPTIONS, "retries"),
        ({"temperature": float("nan")}, COMPLETER_OPTIONS, "temperature"),
        ({"max_tokens": 2.5}, COMPLETER_OPTIONS, "max_tokens"),
        ({"chat": "yes"}, COMPLETER_OPTIONS, "chat"),
        ({"device": "cuda; rm -rf /"}, COMPLETER_OPTIONS, "device"),
        ({"lr": "fast"}, TRAIN_OPTIONS, "lr"),
        ({"lr": 1e308}, TRAIN_OPTIONS, "lr"),
        ({"lr": float("inf")}, TRAIN_OPTIONS, "lr"),
        ({"epochs": -1}, TRAIN_OPTIONS, "epochs"),
        ({"epochs": True}, TRAIN_OPTIONS, "epochs"),
        ({"max_steps": 0}, TRAIN_OPTIONS, "max_steps"),
        ({"lora_r": -8}, TRAIN_OPTIONS, "lora_r"),
        ({"seed": -1}, TRAIN_OPTIONS, "seed"),
        ({"threshold": 1.5}, SCORER_RUN_OPTIONS, "threshold"),
        ({"batch_tokens": 0}, SCORER_RUN_OPTIONS, "batch_tokens"),
        ({"nope": 1}, TRAIN_OPTIONS, "nope"),
    ],
)
def test_it_refuses_a_bad_value_naming_the_option(options, rules, named):
    with pytest.raises(OptionError) as refused:
        check_options(options, rules)
    assert refused.value.name == named and named in str(refused.value)


def test_it_takes_the_values_the_cli_and_the_forms_use():
    check_options(
        {"temperature": 0.7, "top_p": 1, "max_tokens": 1024, "seed": 3, "stop": ["\n\n"]},
        COMPLETER_OPTIONS,
    )
    check_options(
        {"chat": True, "max_in_flight": 64, "timeout_s": 60, "retries": 3}, COMPLETER_OPTIONS
    )
    check_options(
        {"lora_r": 0, "epochs": 1.0, "lr": 2e-6, "max_steps": -1, "save_every": 0}, TRAIN_OPTIONS
    )
    check_options({"device": "cuda:1"}, TRAIN_OPTIONS)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://localhost:70/",
        "ftp://example.org/",
        "http://",
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",  # 169.254.169.254 as one number
        "http://[fe80::1]/v1",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:8000/v1",
    ],
)
def test_a_server_url_is_http_and_not_link_local(url):
    with pytest.raises(OptionError):
        check_server_url(url)


def test_a_server_url_may_be_any_other_http_host():
    for url in (
        "http://127.0.0.1:8000/v1",
        "https://vllm.internal.example/v1",
        "http://gpu-3:8000",
    ):
        check_server_url(url)


def test_a_model_is_a_hub_id_or_a_path_inside_the_model_directory(tmp_path):
    models = tmp_path / "models"
    (models / "run-1").mkdir(parents=True)
    check_model_location("Qwen/Qwen2.5-Math-PRM-7B", models)
    check_model_location("gpt2", models)
    check_model_location(str(models / "run-1"), models)
    for bad in ("/etc", str(models / ".." / "x"), "../models/run-1", "a/../../b", "./x", ""):
        with pytest.raises(OptionError):
            check_model_location(bad, models)
    (tmp_path / "elsewhere").symlink_to(models / "run-1")
    check_model_location(str(tmp_path / "elsewhere"), models)  # resolves inside
    (models / "escape").symlink_to(tmp_path)
    with pytest.raises(OptionError):
        check_model_location(str(models / "escape"), models)


def test_a_completer_spec_checks_its_target(tmp_path):
    check_completer("openai:http://127.0.0.1:8000/v1", tmp_path)
    check_completer("hf:Qwen/Qwen2.5-Math-1.5B", tmp_path)
    for bad in ("openai:file:///etc/passwd", "hf:/etc", "gopher:x", "openai:"):
        with pytest.raises(OptionError) as refused:
            check_completer(bad, tmp_path)
        assert refused.value.name == "completer"


def test_the_cli_refuses_bad_values_before_any_work(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = main(
        ["train", "--kind", "qwen-prm", "--base", "b", "--train", str(PROCESSBENCH_GSM8K),
         "--output", str(out), "--epochs", "-1"]
    )  # fmt: skip
    assert code == 2 and "epochs" in capsys.readouterr().err
    code = main(
        ["mc", "--input", str(PROCESSBENCH_GSM8K), "--completer", "openai:gopher://x",
         "--model", "m", "--output", str(out)]
    )  # fmt: skip
    assert code == 2 and "http" in capsys.readouterr().err
    code = main(
        ["mc", "--input", str(PROCESSBENCH_GSM8K), "--completer", "openai:http://127.0.0.1:9/v1",
         "--model", "m", "--output", str(out), "--option", "timeout_s=-1"]
    )  # fmt: skip
    assert code == 2 and "timeout_s" in capsys.readouterr().err
    assert not out.exists()
