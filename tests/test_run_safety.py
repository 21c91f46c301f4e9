"""Run safety: locked output folders, whole writes, resumable runs and one-line errors (issue 16).

Kill points are simulated deterministically: a checkpoint folder made
partial, a lock held by a live process and one left by a killed process, a
small tmpfs filled up or remounted read-only (skipped where this machine
does not allow mounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gengym_core.cli import main as gengym_main
from gengym_core.run_safety import (
    LOCK_NAME,
    CommandError,
    FolderInUseError,
    OutputLock,
    atomic_write_text,
    changed_settings,
    output_lock,
    replace_folder,
    storage_error_message,
)

#: Holds an output folder's lock until killed: ``python -c HOLDER FOLDER [beside]``.
HOLDER = (
    "import sys, time\n"
    "from gengym_core.run_safety import output_lock\n"
    "with output_lock(sys.argv[1], beside=len(sys.argv) > 2):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


@contextlib.contextmanager
def lock_held_by_another_process(folder: Path, *, beside: bool = False):
    """A live process holding ``folder``'s lock; yields its pid, kills it (SIGKILL) on exit."""
    from helpers import command_env

    argv = [sys.executable, "-c", HOLDER, str(folder)] + (["beside"] if beside else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=command_env())
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def gengym(capsys, *argv: str) -> tuple[int, str]:
    """Run ``gengym ARGV`` in this process; return its exit status and stderr."""
    code = gengym_main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, command: str, *fragments: str) -> str:
    """Exit status 2, no traceback, and the last line ``gengym COMMAND: ...`` holding every fragment."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"gengym {command}: "), err[-2000:]
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str = "1m"):
    """A small tmpfs at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root where mounts are allowed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(folder: Path, *, leave: int = 0) -> None:
    """Write into ``folder`` until its file system has no more than ``leave`` bytes free."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while shutil.disk_usage(folder).free > leave:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def sft_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["sft", "--model", model, "--output-dir", out, "--env", "GeneralPoints-L-v0", "--num-examples", "4",
            "--max-steps", "2", "--per-device-batch-size", "2", "--gradient-accumulation-steps", "1",
            "--deepspeed", "none", "--no-tensorboard", "--no-progress-bar", "--warmup-ratio", "0", *extra]


def ppo_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["ppo", "--model", model, "--output-dir", out, "--env", "GeneralPoints-L-v0", "--num-envs", "2",
            "--num-steps", "1", "--total-updates", "1", "--minibatch-size", "2", "--micro-batch-size", "1",
            "--ppo-epochs", "1", "--max-new-tokens", "4", "--deepspeed", "none", "--no-tensorboard", *extra]


def pair_trainer_args(command: str, model: Path, out: Path, *extra: str) -> list[str]:
    return [command, "--model", model, "--output-dir", out, "--env", "GeneralPoints-L-v0", "--num-pairs", "2",
            "--max-steps", "1", "--per-device-batch-size", "1", "--gradient-accumulation-steps", "1",
            "--deepspeed", "none", "--no-tensorboard", "--no-progress-bar", "--warmup-ratio", "0", *extra]


def experiment_recipe(tmp_path: Path, model: Path, out: Path) -> Path:
    import yaml
    from helpers import TINY_EXPERIMENT

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_EXPERIMENT, "env_id": "GeneralPoints-L-v0", "model": str(model),
                                      "output_dir": str(out)}))
    return recipe


# -- the lock ------------------------------------------------------------------------


def test_a_live_holder_is_refused_by_name_and_a_killed_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    with lock_held_by_another_process(folder) as pid:
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == pid
        with pytest.raises(FolderInUseError, match=rf"{folder} is in use by another run: pid {pid} on host"):
            OutputLock(folder / LOCK_NAME, folder).acquire()
    # SIGKILL ran no cleanup: the lock file of the dead process is still there.
    left = json.loads((folder / LOCK_NAME).read_text())
    assert left["pid"] == pid
    messages: list[str] = []
    lock = OutputLock(folder / LOCK_NAME, folder, log=messages.append)
    with lock:
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert len(messages) == 1 and f"pid {pid}" in messages[0] and "no longer running" in messages[0]
    assert not (folder / LOCK_NAME).exists()
    # A lock file a crashed process wrote by hand-off, with a dead pid: taken over too.
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "host": "h", "command": "gengym sft"}))
    with OutputLock(folder / LOCK_NAME, folder, log=messages.append):
        pass
    assert f"pid {2**22 + 7}" in messages[-1]


def test_the_lock_is_released_when_the_run_raises_and_leaves_no_empty_folder(tmp_path):
    folder = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), output_lock(folder):
        assert (folder / LOCK_NAME).is_file()
        raise RuntimeError("the run failed")
    assert not (tmp_path / "new").exists()
    with output_lock(folder):
        (folder / "result.txt").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == ["result.txt"]


def test_only_the_main_process_of_a_launch_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with output_lock(tmp_path / "run"):
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["sft", "ppo", "dpo", "reward-model", "experiment", "data", "pairs", "eval", "play"])
def test_a_second_run_into_a_held_folder_stops_with_one_line(command, tiny_model_path, tmp_path, capsys):
    model = tiny_model_path("qwen2")
    out = tmp_path / "out"
    argv = {
        "sft": sft_args(model, out),
        "ppo": ppo_args(model, out),
        "dpo": pair_trainer_args("dpo", model, out),
        "reward-model": pair_trainer_args("reward-model", model, out),
        "experiment": ["experiment", experiment_recipe(tmp_path, model, out)],
        "data": ["data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", out, "--no-progress"],
        "pairs": ["pairs", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", out, "--no-progress-bar"],
        "eval": ["eval", "--model", "oracle", "--env", "GeneralPoints-L-v0", "--episodes", "1", "--output-dir", out],
        "play": ["play", "--env", "GeneralPoints-L-v0", "--out", out, "--quiet"],
    }[command]
    beside = command in ("data", "pairs", "eval")  # folders replaced whole keep their lock beside them
    with lock_held_by_another_process(out, beside=beside) as pid:
        code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, "is in use by another run", f"pid {pid}")
    assert not (out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()))


# -- whole writes --------------------------------------------------------------------


def test_atomic_writes_and_folder_swaps_leave_the_old_version_until_the_new_is_complete(tmp_path):
    target = tmp_path / "settings.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["settings.json"]

    folder = tmp_path / "data"
    replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "a").write_text("1")))

    def fails(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "a").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_folder(folder, fails)
    assert (folder / "a").read_text() == "1"
    replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "b").write_text("2")))
    assert sorted(p.name for p in folder.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "settings.json"]
    # Killed between the two renames: the old version is put back before anything else.
    folder.rename(tmp_path / "data.old")
    replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "c").write_text("3")))
    assert sorted(p.name for p in folder.iterdir()) == ["c"] and not (tmp_path / "data.old").exists()


def test_data_overwrite_refuses_folders_that_are_not_gengym_data(tiny_model_path, tmp_path, capsys):
    model = shutil.copytree(tiny_model_path("qwen2"), tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    code, err = gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", model, "--overwrite",
                       "--no-progress")
    assert_one_line_error(code, err, "data", "replaces only a gengym data folder", "no dataset_info.json")
    assert sorted(p.name for p in model.iterdir()) == before
    code, err = gengym(capsys, "pairs", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", model, "--overwrite")
    assert_one_line_error(code, err, "pairs", "replaces only a gengym pairs folder")
    # A data folder is not a pairs folder, and a folder with a user's file in it is neither.
    data = tmp_path / "data"
    assert gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", data, "--no-progress")[0] == 0
    code, err = gengym(capsys, "pairs", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", data, "--overwrite")
    assert_one_line_error(code, err, "pairs", "without the columns")
    (data / "notes.txt").write_text("mine")
    code, err = gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", data, "--overwrite",
                       "--no-progress")
    assert_one_line_error(code, err, "data", "also holds notes.txt")
    (data / "notes.txt").unlink()
    assert gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "3", "--out", data, "--overwrite",
                  "--no-progress")[0] == 0
    from datasets import load_from_disk

    assert len(load_from_disk(str(data))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]


def test_data_overwrite_on_a_full_disk_keeps_the_old_dataset(tmp_path, capsys):
    from datasets import load_from_disk

    with mounted_tmpfs(tmp_path / "disk", size="512k") as disk:
        data = disk / "data"
        assert gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", data, "--no-progress")[0] == 0
        fill(disk, leave=64 << 10)  # room for the lock, not for the new dataset
        code, err = gengym(capsys, "data", "--env", "GeneralPoints-L-v0", "--n", "400", "--out", data,
                           "--overwrite", "--no-progress")
        assert_one_line_error(code, err, "data", "no space left on the disk")
        assert len(load_from_disk(str(data))) == 2  # the old dataset, whole


def test_eval_folder_holds_one_evaluation(tmp_path, capsys):
    out = tmp_path / "eval"
    base = ["eval", "--model", "oracle", "--env", "GeneralPoints-L-v0", "--episodes", "1", "--output-dir", out]
    assert gengym(capsys, *base, "--variants", "all")[0] == 0
    assert sorted(p.name for p in (out / "transcripts").iterdir()) == ["id", "rule-ood"]
    code, err = gengym(capsys, *base, "--variants", "id")
    assert_one_line_error(code, err, "eval", "exists and is not empty; pass --overwrite")
    assert gengym(capsys, *base, "--variants", "id", "--overwrite")[0] == 0
    assert sorted(p.name for p in (out / "transcripts").iterdir()) == ["id"]
    assert list(json.loads((out / "metrics.json").read_text())["variants"]) == ["id"]
    (out / "notes.txt").write_text("mine")
    code, err = gengym(capsys, *base, "--overwrite")
    assert_one_line_error(code, err, "eval", "replaces only a gengym evaluation", "notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


# -- resuming and refusing (SFT, DPO, reward models; PPO) ----------------------------


def sft_config(model: Path, out: Path, **overrides):
    from helpers import tiny_run_config

    from trainers.sft import GengymSFTConfig

    settings = dict(num_examples=8, max_steps=3, per_device_batch_size=2, learning_rate=5e-3, save_steps=1)
    return tiny_run_config(GengymSFTConfig, model, out, **{**settings, **overrides})


def test_sft_resume_finishes_complete_runs_and_skips_incomplete_checkpoints(tiny_model_path, tmp_path, capsys):
    from trainers.common.compute import TRAINING_RECORD
    from trainers.common.metrics import read_metrics
    from trainers.sft.sft_trainer import train_sft

    base, out = tiny_model_path("qwen2"), tmp_path / "run"
    final = train_sft(sft_config(base, out))
    record = json.loads((final / TRAINING_RECORD).read_text())
    listing = sorted(p.name for p in out.iterdir())
    assert "checkpoint-3" in listing and record["steps"] == 3

    # A finished run: nothing trained, nothing written.
    capsys.readouterr()
    assert train_sft(sft_config(base, out, resume=True)) == final
    assert "holds a complete run (3 of 3 steps); nothing to train" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == listing
    assert json.loads((final / TRAINING_RECORD).read_text()) == record

    # Killed after its last checkpoint, before the final model: written from the checkpoint, no step more.
    shutil.rmtree(final)
    train_sft(sft_config(base, out, resume=True))
    assert json.loads((final / TRAINING_RECORD).read_text()) == record
    assert sorted(p.name for p in out.iterdir()) == listing

    # Killed while writing checkpoint-3 (its trainer state, written last, is missing): resumed from checkpoint-2.
    (out / "checkpoint-3" / "trainer_state.json").unlink()
    capsys.readouterr()
    final = train_sft(sft_config(base, out, resume=True, max_steps=4))
    err = capsys.readouterr().err
    assert "checkpoint-3 is incomplete (no readable trainer_state.json); set aside as incomplete-checkpoint-3" in err
    assert json.loads((final / TRAINING_RECORD).read_text())["steps"] == 4
    assert (out / "incomplete-checkpoint-3").is_dir() and (out / "checkpoint-4").is_dir()
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl") if "loss" in m] == [1, 2, 3, 4]


def test_checkpoint_files_cut_short_make_the_checkpoint_incomplete(tmp_path):
    import torch
    from safetensors.torch import save_file

    from trainers.common.hf_trainer_support import checkpoint_problem, last_complete_checkpoint

    for step in (1, 2):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"w": torch.zeros(64)}, folder / "model.safetensors")
        torch.save({"state": torch.zeros(64)}, folder / "optimizer.pt")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert checkpoint_problem(tmp_path / "checkpoint-2") == ""
    weights = tmp_path / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert checkpoint_problem(tmp_path / "checkpoint-2") == "model.safetensors: cut short"
    weights.write_bytes(b"")
    assert checkpoint_problem(tmp_path / "checkpoint-2") == "model.safetensors: empty or cut short"
    optimizer = tmp_path / "checkpoint-1" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    assert checkpoint_problem(tmp_path / "checkpoint-1") == "optimizer.pt: not a whole torch file"
    assert last_complete_checkpoint(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incomplete-checkpoint-1", "incomplete-checkpoint-2"]


def test_dpo_resumes_from_the_last_complete_checkpoint(tiny_model_path, tmp_path):
    from helpers import tiny_run_config

    from trainers.common.compute import TRAINING_RECORD
    from trainers.dpo.dpo_config import GengymDPOConfig
    from trainers.dpo.dpo_trainer import train_dpo

    def config(**overrides):
        return tiny_run_config(GengymDPOConfig, tiny_model_path("qwen2"), tmp_path / "run", num_pairs=4,
                               per_device_batch_size=1, save_steps=1, **overrides)

    train_dpo(config(max_steps=2))
    weights = tmp_path / "run" / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])  # a disk-full crash
    final = train_dpo(config(max_steps=3, resume=True))
    assert json.loads((final / TRAINING_RECORD).read_text())["steps"] == 3
    assert (tmp_path / "run" / "incomplete-checkpoint-2").is_dir()


@pytest.mark.parametrize("command", ["sft", "dpo", "reward-model"])
def test_a_new_run_over_an_earlier_one_is_refused(command, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "final" / "model.safetensors").write_bytes(b"earlier")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    model = tiny_model_path("qwen2")
    argv = sft_args(model, out) if command == "sft" else pair_trainer_args(command, model, out)
    code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, f"output_dir {out} holds an earlier run",
                          "pass --resume to continue it, pass --overwrite to replace it")
    assert (out / "final" / "model.safetensors").read_bytes() == b"earlier"


def test_overwrite_replaces_only_the_earlier_runs_files(tiny_model_path, tmp_path):
    from trainers.sft.sft_trainer import train_sft

    base, out = tiny_model_path("qwen2"), tmp_path / "run"
    out.mkdir()
    (out / "README.md").write_text("my notes on this run")  # alone, a user's file: no earlier run
    train_sft(sft_config(base, out, max_steps=2))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="resume continues the run in output_dir and overwrite replaces it"):
        train_sft(sft_config(base, out, resume=True, overwrite=True))
    train_sft(sft_config(base, out, max_steps=1, save_steps=0, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["final", "gengym_sft_config.json", "metrics.jsonl", "notes.txt"]


def test_resume_with_changed_settings_is_refused_naming_them(tiny_model_path, tmp_path):
    from trainers.common.config import ConfigError
    from trainers.common.hf_trainer_support import write_run_settings
    from trainers.ppo.ppo_config import PPOConfig
    from trainers.sft.sft_trainer import SETTINGS_FILE, train_sft

    base, out = tiny_model_path("qwen2"), tmp_path / "run"
    write_run_settings(out, SETTINGS_FILE, sft_config(base, out))
    changed = sft_config(base, out, resume=True, learning_rate=1e-3, num_examples=16, data_seed=3, max_steps=9)
    with pytest.raises(ConfigError) as caught:
        train_sft(changed)
    message = str(caught.value)
    assert "settings changed since it began" in message
    for change in ("learning_rate 0.005 -> 0.001", "num_examples 8 -> 16", "data_seed 0 -> 3"):
        assert change in message
    assert "max_steps" not in message  # a longer run is a resumable change

    # PPO: the same check, against the config.json its run began with.
    from helpers import tiny_ppo_config

    ppo_out = tmp_path / "ppo"
    (ppo_out / "checkpoints" / "update-00001" / "engine").mkdir(parents=True)
    (ppo_out / "checkpoints" / "update-00001" / "engine" / "client_state.json").write_text("{}")
    from trainers.common.config import config_to_dict

    (ppo_out / "config.json").write_text(json.dumps(config_to_dict(tiny_ppo_config(base, ppo_out))))
    with pytest.raises(ConfigError, match=r"settings changed since it began \(learning_rate 0.001 -> 0.0001\)"):
        PPOConfig.check_runnable(tiny_ppo_config(base, ppo_out, resume=True, learning_rate=1e-4, total_updates=3))


def test_changed_settings_compare_as_stored():
    previous = {"a": [1, 2], "b": 1.0, "free": 1}
    assert changed_settings({"a": (1, 2), "b": 1.0, "free": 2, "new": 3}, previous, free={"free"}) == []
    assert changed_settings({"a": (1, 3), "b": 2.0}, previous) == ["a", "b"]


# -- DeepSpeed's op-build lock ---------------------------------------------------------


def test_a_stale_op_build_lock_is_removed_and_a_live_one_reported(tmp_path):
    import time

    from trainers.common.engine import OP_BUILD_LOCK, OpBuildGuard

    root = tmp_path / "torch_extensions"
    stale = root / "cpu_adam" / OP_BUILD_LOCK
    live = root / "fused_adam" / OP_BUILD_LOCK
    for lock in (stale, live):
        lock.parent.mkdir(parents=True)
        lock.write_text("")
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=live.parent)
    messages: list[str] = []
    try:
        with OpBuildGuard(root, warn_after=0.0, poll=0.05, log=messages.append):
            time.sleep(0.5)
    finally:
        builder.kill()
        builder.wait()
    assert not stale.exists() and live.exists()
    assert f"removed a stale DeepSpeed op-build lock {stale}" in messages[0]
    waits = [m for m in messages if "waits for the op-build lock" in m]
    assert len(waits) == 1 and f"rm {live}" in waits[0]

    # Another gengym process in DeepSpeed's setup (holding the marker): its builds are left alone.
    with OpBuildGuard(root, poll=60):
        stale.write_text("")
        with OpBuildGuard(root, poll=60, log=messages.append):
            assert stale.exists()
    with OpBuildGuard(root, poll=60, log=messages.append):
        assert not stale.exists()


def test_op_builds_use_the_folder_torch_builds_them_in(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    from trainers.common.engine import extension_build_root

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extension_build_root() == tmp_path
    assert Path(cpp_extension._get_build_directory("cpu_adam", verbose=False)).parent == tmp_path
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Path(cpp_extension._get_build_directory("cpu_adam", verbose=False)).parent == extension_build_root()


# -- async vector envs ---------------------------------------------------------------------

SMALL_KWARGS = {
    "GeneralPoints-L-v0": {},
    "GeneralPoints-L-compact-v0": {},
    "GeneralPoints-VL-v0": {"image_size": 64},
    "VIRL-L-v0": {"view_size": 32},
    "VIRL-VL-v0": {"view_size": 32},
}


@pytest.mark.parametrize("env_id", sorted(SMALL_KWARGS))
def test_async_vector_envs_return_the_prompts_of_single_envs(env_id):
    import gymnasium as gym

    from gengym_core.registry import gengym_env_ids

    assert set(gengym_env_ids()) == set(SMALL_KWARGS)
    kwargs = SMALL_KWARGS[env_id]
    singles = [gym.make(env_id, **kwargs) for _ in range(2)]
    expected = [env.reset(seed=seed)[0]["text"] for env, seed in zip(singles, (3, 4), strict=True)]
    vec = gym.make_vec(env_id, 2, vectorization_mode="async", **kwargs)
    try:
        obs, _ = vec.reset(seed=[3, 4])
        assert isinstance(obs["text"], tuple) and list(obs["text"]) == expected
        answers = list(vec.call("oracle_answer"))
        expected = [env.step(answer)[0]["text"] for env, answer in zip(singles, answers, strict=True)]
        obs, *_ = vec.step(answers)
        assert list(obs["text"]) == expected
    finally:
        vec.close()


# -- a checkpoint's own code ---------------------------------------------------------------


def remote_code_model(tiny_model_path, folder: Path) -> tuple[Path, Path]:
    """A copy of the tiny model whose config needs its own code, and the file that code would write."""
    marker = folder.parent / "the-checkpoint-code-ran"
    shutil.copytree(tiny_model_path("qwen2"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="gengym_custom",
                  auto_map={"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return folder, marker


@pytest.mark.parametrize("reward", [False, True], ids=["model", "judge"])
def test_ppo_never_asks_to_run_a_checkpoints_code(reward, tiny_model_path, tmp_path):
    from helpers import command_env, gengym_command

    custom, marker = remote_code_model(tiny_model_path, tmp_path / "custom")
    model = tiny_model_path("qwen2") if reward else custom
    argv = ppo_args(model, tmp_path / "out", *(["--reward", f"judge:{custom}"] if reward else []))
    done = subprocess.run(gengym_command(*map(str, argv)), env=command_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert f"{str(custom)!r} needs its own Python code to load" in done.stderr
    assert "--trust-remote-code" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


def test_eval_and_sft_refuse_a_checkpoints_code_unless_trusted(tiny_model_path, tmp_path, capsys):
    custom, marker = remote_code_model(tiny_model_path, tmp_path / "custom")
    code, err = gengym(capsys, "eval", "--model", custom, "--env", "GeneralPoints-L-v0", "--episodes", "1",
                       "--output-dir", tmp_path / "eval")
    assert_one_line_error(code, err, "eval", "needs its own Python code to load")
    code, err = gengym(capsys, *sft_args(custom, tmp_path / "sft"))
    assert_one_line_error(code, err, "sft", "needs its own Python code to load")
    assert not marker.exists()


def test_every_from_pretrained_call_says_whether_checkpoint_code_may_run():
    """transformers asks on the terminal when ``trust_remote_code`` is not given; every call gives it."""
    import ast

    from helpers import REPO

    missing = []
    folders = ("gengym_core", "gym_generalpoints", "gym_virl", "gengym_integrations", "gengym_verifiers", "trainers",
               "examples", "benchmarks", "tools")
    for folder in folders:
        if not (REPO / folder).is_dir():
            continue
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr != "from_pretrained" or ast.unparse(node.func.value) == "PeftModel":
                    continue
                if "trust_remote_code" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not missing, missing


# -- one-line errors -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sft", "ppo", "dpo", "reward-model", "play", "experiment", "demo"])
def test_an_output_folder_that_is_a_file(command, tiny_model_path, tmp_path, capsys):
    model = tiny_model_path("qwen2")
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    argv = {
        "sft": sft_args(model, out),
        "ppo": ppo_args(model, out),
        "dpo": pair_trainer_args("dpo", model, out),
        "reward-model": pair_trainer_args("reward-model", model, out),
        "play": ["play", "--env", "GeneralPoints-L-v0", "--out", out],
        "experiment": ["experiment", experiment_recipe(tmp_path, model, out)],
        "demo": ["demo", "--out", out, "--model", model, "--env", "GeneralPoints-L-v0"],
    }[command]
    code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, f"{out} is a file, not a folder")
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["eval", "ppo", "sft", "data", "play", "pairs", "experiment"])
def test_a_read_only_output_folder(command, tiny_model_path, tmp_path, capsys):
    model = tiny_model_path("qwen2")
    with mounted_tmpfs(tmp_path / "disk") as disk:
        out = disk / "out"
        out.mkdir()
        recipe = experiment_recipe(tmp_path, model, out)
        remount_read_only(disk)
        argv = {
            "eval": ["eval", "--model", "oracle", "--env", "GeneralPoints-L-v0", "--episodes", "1", "--output-dir",
                     out],
            "ppo": ppo_args(model, out),
            "sft": sft_args(model, out),
            "data": ["data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", out, "--no-progress"],
            "play": ["play", "--env", "GeneralPoints-L-v0", "--out", out, "--quiet"],
            "pairs": ["pairs", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", out, "--no-progress-bar"],
            "experiment": ["experiment", recipe],
        }[command]
        code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, "the file system is read-only")


@pytest.mark.parametrize("command", ["sft", "ppo", "eval", "data", "play", "experiment"])
def test_a_full_disk(command, tiny_model_path, tmp_path, capsys):
    model = tiny_model_path("qwen2")
    with mounted_tmpfs(tmp_path / "disk", size="256k") as disk:
        out = disk / "out"
        recipe = experiment_recipe(tmp_path, model, out)
        fill(disk)
        argv = {
            "sft": sft_args(model, out),
            "ppo": ppo_args(model, out),
            "eval": ["eval", "--model", "oracle", "--env", "GeneralPoints-L-v0", "--episodes", "1", "--output-dir",
                     out],
            "data": ["data", "--env", "GeneralPoints-L-v0", "--n", "2", "--out", out, "--no-progress"],
            "play": ["play", "--env", "GeneralPoints-L-v0", "--out", out, "--quiet"],
            "experiment": ["experiment", recipe],
        }[command]
        code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, "no space left on the disk")


def test_a_disk_that_fills_while_sft_saves(tiny_model_path, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "disk", size="160k") as disk:
        code, err = gengym(capsys, *sft_args(tiny_model_path("qwen2"), disk / "out", "--save-steps", "1"))
    line = assert_one_line_error(code, err, "sft")
    assert "no space left on the disk" in line or "the disk of" in line and "is full" in line


@pytest.mark.parametrize("command", ["eval", "sft", "ppo", "reward-model"])
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_weights_file(command, damage, tiny_model_path, tmp_path, capsys):
    model = shutil.copytree(tiny_model_path("qwen2"), tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(b"" if damage == "empty" else weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "out"
    argv = {
        "eval": ["eval", "--model", model, "--env", "GeneralPoints-L-v0", "--episodes", "1", "--output-dir", out],
        "sft": sft_args(model, out),
        "ppo": ppo_args(model, out),
        "reward-model": pair_trainer_args("reward-model", model, out),
    }[command]
    code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, command, f"cannot load the weights in {str(model)!r}",
                          "empty, truncated or damaged")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["play", "--env", "Nope-v0"], "unknown gengym env 'Nope-v0'"),
        (["play", "--env", "GeneralPoints-L-v0", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["play", "--env", "GeneralPoints-L-v0", "--env-kwarg", "colour=red"], "unknown GeneralPoints option(s) colour"),
        (["play", "--env", "GeneralPoints-L-v0", "--env-kwarg", "render_mode=human"],
         "has no render_mode 'human'; its render modes are rgb_array, ansi"),
        (["play", "--env", "VIRL-L-v0", "--env-kwarg", "render_mode=human"], "its render modes are rgb_array, ansi"),
        (["eval", "--model", "oracle", "--env", "GeneralPoints-L-v0", "--seed", "-1", "--output-dir", "{tmp}/e"],
         "--seed must be >= 0"),
        (["ppo", "--model", "{model}", "--learning-rate", "nan", "--output-dir", "{tmp}/p"],
         "learning_rate: expected a finite number, got 'nan'"),
        (["ppo", "--model", "{model}", "--seed", "-5", "--output-dir", "{tmp}/p"], "seed must be >= 0, got -5"),
        (["ppo", "--model", "{model}", "--env-kwarg", 'rewards={"illegal": -1e39}', "--output-dir", "{tmp}/p"],
         "illegal must be a finite number, at most 1e+06 in size; got -1e+39"),
    ],
)
def test_bad_settings_end_with_one_line(argv, fragment, tiny_model_path, tmp_path, capsys):
    model = tiny_model_path("qwen2")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(model)) for a in argv]
    code, err = gengym(capsys, *argv)
    assert_one_line_error(code, err, argv[0], fragment)
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("command", ["sft", "dpo", "reward-model"])
def test_help_shows_percent_signs_as_text(command, capsys):
    with pytest.raises(SystemExit):
        gengym_main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "~30% slower" in text and "option_strings" not in text


def test_a_yaml_key_given_twice_is_an_error(tmp_path, capsys):
    from trainers.common.config import ConfigError, load_yaml

    config = tmp_path / "sft.yaml"
    config.write_text("learning_rate: 1e-5\nmax_steps: 10\nlearning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match="duplicate key 'learning_rate'"):
        load_yaml(config)
    nested = tmp_path / "experiment.yaml"
    nested.write_text("sft:\n  max_steps: 2\n  max_steps: 3\n")
    code, err = gengym(capsys, "experiment", nested)
    assert_one_line_error(code, err, "experiment", "duplicate key 'max_steps'")
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {max_steps: 2}\nsft:\n  <<: *b\n  max_steps: 3\n")
    assert load_yaml(merged)["sft"] == {"max_steps": 3}


def test_storage_errors_from_libraries_read_as_one_line():
    assert storage_error_message(ValueError("x")) is None
    rust = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert storage_error_message(rust).endswith(": no space left on the disk (No space left on device)")
    torch_write = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert storage_error_message(torch_write).startswith("writing a torch file failed ([enforce fail")
    wrapped = ValueError("saving failed")
    wrapped.__cause__ = OSError(30, "Read-only file system", "/x/y")
    assert storage_error_message(wrapped) == "cannot write /x/y: the file system is read-only (Read-only file system)"
