"""The stop signal (SIGTERM/SIGINT -> save, then exit) and the launcher's loop dispatch.

The end-to-end checks (a training run stopped by SIGTERM, in process and as a real launcher
process, then resumed) are in test_training_runs.py, beside the fixtures they share.
"""

from __future__ import annotations

import os
import signal
import sys
import types

import pytest
from omegaconf import OmegaConf

from hrm_codegen import train_cli
from hrm_codegen.training.preemption import StopSignal, TrainingInterrupted


def test_the_first_signal_only_raises_the_flag_and_the_old_handler_comes_back(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before os.kill returns (main thread)
        assert stop.requested == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    assert "SIGTERM: saving a checkpoint after this step" in capsys.readouterr().err


def test_a_second_signal_stops_the_process_at_once():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            with StopSignal(announce=False):
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # the default action: terminated here
        finally:
            os._exit(0)  # reached only if the second signal did not terminate the child
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_a_second_sigint_raises_keyboard_interrupt_as_python_does():
    # Python's own handler, as in a foreground process (a background job starts with SIGINT
    # ignored: see the next test)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), StopSignal(announce=False) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, saved)


def test_a_signal_that_was_ignored_stays_ignored_the_second_time():
    """A background job starts with SIGINT ignored: the second SIGINT must not kill it."""
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignal(announce=False) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # ignored, as without the handler
            assert stop.requested == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)


def test_training_interrupted_names_the_step_and_exits_128_plus_the_signal():
    stop = TrainingInterrupted(signal.SIGTERM, 12, "runs/x/checkpoint")
    assert stop.exit_code == 143 and stop.step == 12
    assert "stopped by SIGTERM at step 12; checkpoint runs/x/checkpoint" in str(stop)


# ----------------------------------------------------------------------------- the launcher


def test_loop_gspo_hands_the_config_to_the_rl_package(monkeypatch):
    seen = []
    fake = types.ModuleType("hrm_codegen.rl")
    fake.train_gspo = lambda cfg: seen.append(cfg.loop) or "run-dir"
    monkeypatch.setitem(sys.modules, "hrm_codegen.rl", fake)
    assert train_cli.run_training(OmegaConf.create({"loop": "gspo"})) == "run-dir"
    assert seen == ["gspo"]


def test_a_missing_rl_package_or_an_unknown_loop_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "hrm_codegen.rl", None)  # import raises ImportError
    with pytest.raises(train_cli.LoopConfigError, match="loop=gspo needs hrm_codegen.rl"):
        train_cli.run_training(OmegaConf.create({"loop": "gspo"}))
    with pytest.raises(train_cli.LoopConfigError, match="loop='ppo' is not one of"):
        train_cli.run_training(OmegaConf.create({"loop": "ppo"}))


def test_the_launcher_exits_128_plus_the_signal_after_a_stop(monkeypatch, capsys):
    def stopped(cfg):
        raise TrainingInterrupted(signal.SIGTERM, 5)

    monkeypatch.setattr(train_cli, "run_training", stopped)
    with pytest.raises(SystemExit) as info:
        train_cli.main(OmegaConf.create({}))
    assert info.value.code == 143
    assert "stopped by SIGTERM at step 5" in capsys.readouterr().err


def test_pass_at_1_is_skipped_where_it_does_not_apply():
    cfg = OmegaConf.create({"eval": {"pass_at_1": True}, "data": {"stage": "pretrain"}})
    context = types.SimpleNamespace(cfg=cfg, data=types.SimpleNamespace(eval_tasks=["t"]))
    assert train_cli.pass_at_1_evaluator(None, context) == {}
    cfg.data.stage, cfg.eval.pass_at_1 = "sft", False
    assert train_cli.pass_at_1_evaluator(None, context) == {}
