"""Text spaces, chat helpers and the gengym command line (gengym_core)."""

import argparse
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from gymnasium import spaces

from gengym_core import chat
from gengym_core.cli import COMMANDS, build_parser
from gengym_core.play import parse_env_kwargs
from gengym_core.spaces import PROMPT_CHARSET, FreeText, prompt_space, to_prompt_text


def test_free_text_contains_any_string_up_to_its_length():
    space = FreeText(max_length=10)
    assert space.contains("")
    assert space.contains("\u2660\u00e9\x00 {}")
    assert not space.contains("x" * 11)
    assert not space.contains(b"bytes")
    assert not space.contains(3)


def test_free_text_samples_are_short_readable_and_seeded():
    a, b = FreeText(seed=3), FreeText(seed=3)
    samples = [a.sample() for _ in range(20)]
    assert samples == [b.sample() for _ in range(20)]
    assert all(len(s) <= 256 and set(s) <= set(PROMPT_CHARSET) for s in samples)
    assert pickle.loads(pickle.dumps(a)) == a


def test_prompt_space_is_a_plain_text_space_over_printable_ascii():
    space = prompt_space(100)
    assert type(space) is spaces.Text
    assert space.contains("Cards: A, 7, K\nTarget: 24\t(ok)")
    assert not space.contains("caf\u00e9")


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        ("plain", None, "plain"),
        ("Caf\u00e9 \u2665", None, "Cafe ?"),
        ("a\r\nb", None, "a\nb"),
        ("\u0663\u0664", None, "??"),
    ],
)
def test_to_prompt_text_sanitises(raw, limit, expected):
    assert to_prompt_text(raw, limit) == expected


def test_to_prompt_text_cuts_long_text_to_exactly_the_limit():
    cut = to_prompt_text("\u00e9" * 10_000, max_chars=100)
    assert len(cut) <= 100 and cut.endswith("more characters]")
    assert prompt_space(100).contains(cut)


def test_chat_helpers_build_processor_format():
    messages = [chat.user_message("look", num_images=1), chat.assistant_message("{}")]
    assert messages[0]["content"][0] == {"type": "image"}
    assert chat.message_text(messages[0]) == "look"
    assert chat.count_images(messages) == 1
    with pytest.raises(ValueError, match="images"):
        chat.to_text_only(messages)
    assert chat.to_text_only([chat.user_message("hi")]) == [{"role": "user", "content": "hi"}]
    copied = chat.copy_messages(messages)
    copied[0]["content"].clear()
    assert messages[0]["content"]


def test_env_kwargs_parse_json_or_text():
    assert parse_env_kwargs(["a=1", "b=red", "c=[1, 2]", "d="]) == {"a": 1, "b": "red", "c": [1, 2], "d": ""}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env_kwargs(["novalue"])


def test_cli_lists_every_command_and_parses_play():
    parser = build_parser()
    args = parser.parse_args(["play", "--env", "X", "--seed", "3"])
    assert args.command == "play" and args.seed == 3
    assert "play" in COMMANDS


def test_subcommand_help_states_each_default_once():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        text = " ".join(sub.choices[name].format_help().split())  # undo argparse's line wrapping
        assert "(default: None)" not in text, name
        assert not re.search(r"\(default: [^)]*\) \(default:", text), name
    play = " ".join(sub.choices["play"].format_help().split())
    assert "(default: GeneralPoints-VL-v0)" in play
    sft = " ".join(sub.choices["sft"].format_help().split())
    assert "(default: runs/sft)" in sft


def test_cli_help_runs_without_heavy_imports():
    code = (
        "import sys\n"
        "from gengym_core.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'deepspeed') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "gengym_core.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("gengym ")
    assert np.__version__  # numpy importable beside it


@pytest.mark.parametrize("missing", ["torch", "matplotlib", "tensorboard"])
def test_missing_training_extra_is_a_hint_not_a_traceback(monkeypatch, capsys, missing):
    import gengym_core.play as play
    from gengym_core.cli import main

    def run(args):
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    monkeypatch.setattr(play, "run", run)
    assert main(["play"]) == 2
    assert "generalization-gym[train]" in capsys.readouterr().err


def test_other_missing_modules_still_raise(monkeypatch):
    import gengym_core.play as play
    from gengym_core.cli import main

    def run(args):
        raise ModuleNotFoundError("No module named 'not_an_extra'", name="not_an_extra")

    monkeypatch.setattr(play, "run", run)
    with pytest.raises(ModuleNotFoundError):
        main(["play"])


def test_registry_make_reports_bad_ids_and_options_as_value_errors():
    from gengym_core.registry import make

    with pytest.raises(ValueError, match="unknown gengym env 'Nope-v0'; known ids: .*GeneralPoints-L-v0"):
        make("Nope-v0")
    with pytest.raises(ValueError, match="unknown GeneralPoints option"):
        make("GeneralPoints-L-v0", colour="red")
    with pytest.raises(ValueError, match="unknown VIRL env argument"):
        make("VIRL-L-v0", action_spaces="relative")
    assert make("GeneralPoints-L-v0", target=10).unwrapped.config.target == 10


def test_cli_closes_a_launch_process_group_after_a_command():
    # Under a launcher, `gengym` waits for every process and closes the torch
    # process group before exiting (a process leaving it open can abort).
    pytest.importorskip("torch")
    code = (
        "import os, socket, torch.distributed as dist\n"
        "from gengym_core.cli import close_process_group\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "close_process_group()  # nothing to close yet\n"
        "dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)\n"
        "assert dist.is_initialized()\n"
        "close_process_group()\n"
        "assert not dist.is_initialized()\n"
        "print('closed')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "closed" in out.stdout, out.stderr[-2000:]


def test_closing_a_single_process_group_drops_the_launcher_variables_it_invented():
    # Left behind, they would make the next trainer in the process (accelerate)
    # start a group of its own on port 29500, which another run may hold.
    pytest.importorskip("deepspeed")
    code = (
        "import os\n"
        "os.environ['LOCAL_RANK'] = '0'  # given by the caller: stays\n"
        "from trainers.common.engine import init_distributed\n"
        "from gengym_core.cli import close_process_group\n"
        "init_distributed('gloo')\n"
        "assert os.environ['WORLD_SIZE'] == '1' and os.environ['RANK'] == '0'\n"
        "close_process_group()\n"
        "left = sorted(k for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k in os.environ)\n"
        "print('left', left)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "left ['LOCAL_RANK']" in out.stdout, out.stderr[-2000:]
