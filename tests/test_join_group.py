"""join_group on a CUDA device, checked without one: torch.cuda.set_device takes only an indexed
device ("cuda:1" or 1), so a bare "cuda" must not reach it (it failed every GPU run once). And
the choices a data-parallel run makes without a GPU: its backend, its exit status, its notices."""

import pytest
import torch

import derl
from derl import distributed
from derl.errors import UsageError
from derl.train import budget_notice, join_group, planned_steps


def test_a_bare_cuda_device_is_not_made_current(monkeypatch):
    made_current = []

    def set_device(device):
        index = torch.device(device).index if not isinstance(device, int) else device
        if index is None:  # what torch.cuda.set_device raises for "cuda"
            raise ValueError(f"Expected a torch.device with a specified index, but got:{device}")
        made_current.append(index)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for name, expected in (("cuda", []), ("cuda:1", [1])):
        made_current.clear()
        config = derl.make_config("ppo", "CartPole-v1", device=name, deterministic=False)
        _, device = join_group(config)
        assert device == torch.device(name) and made_current == expected


def test_processes_on_one_gpu_are_given_gloo_and_refused_nccl(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda, cuda0, cpu = torch.device("cuda"), torch.device("cuda:0"), torch.device("cpu")
    assert distributed.backend_for("auto", cuda, 2) == "nccl"  # a GPU each
    assert distributed.backend_for("auto", cuda, 3) == "gloo"  # more processes than GPUs
    assert distributed.backend_for("auto", cuda0, 2) == "gloo"  # both on GPU 0
    assert distributed.backend_for("auto", cuda0, 1) == "nccl"
    assert distributed.backend_for("auto", cpu, 2) == "gloo"
    with pytest.raises(UsageError, match="2 processes on cuda:0; use --device cuda"):
        distributed.backend_for("nccl", cuda0, 2)


@pytest.mark.parametrize(
    "exitcodes,status",
    [
        ({0: 1, 1: 4}, 4),  # rank 1 could not write its checkpoint; rank 0 lost its peer
        ({0: -15, 1: 4}, 4),  # ... or torchrun stopped rank 0 (SIGTERM)
        ({0: 1, 1: -9}, 137),  # rank 1 was killed (the OOM killer)
        ({0: 1, 1: -15}, 1),  # rank 0 failed first; torchrun stopped rank 1
        ({0: 2, 1: 2}, 2),  # a refusal every rank shares
        ({0: -15, 1: -15}, 143),  # the whole group was stopped
    ],
)
def test_a_failed_data_parallel_run_exits_with_the_cause(exitcodes, status):
    assert distributed.failed_status(exitcodes) == status


def test_the_budget_notice_counts_every_process():
    # PPO CartPole: rollouts of 8 envs x 32 steps, 256 env steps; 768 is 3 whole rollouts. With
    # 2 processes a rollout is 512 env steps, and 768 takes 1,024.
    assert budget_notice(derl.make_config("ppo", "CartPole-v1", num_train_steps=768)) == ""
    config = derl.make_config("ppo", "CartPole-v1", num_train_steps=768, nproc=2)
    assert budget_notice(config) == (
        "derl: rollouts are 512 env steps (--num-envs 8 x --num-runner-steps 32 x --nproc 2), "
        "so --num-train-steps 768 takes 1,024"
    )


def test_the_progress_bar_counts_to_the_whole_rollouts(tmp_path, capsys):
    # 300 steps of PPO CartPole take 2 rollouts of 256: the bar ends at 512/512, not at 300/300
    # with 212 steps it never shows (BipedalWalker-v3's 32 x 2048 rollouts made it 3000/3000).
    derl.train(derl.make_config("ppo", "CartPole-v1", num_train_steps=300, logdir=tmp_path))
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("512/512" in line for line in bar), bar[-3:]
    assert planned_steps(derl.make_config("dqn", "CartPole-v1", num_train_steps=300)) == 300


def test_a_gpu_index_torch_lacks_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.checked_device("cuda:1", "--device") == torch.device("cuda:1")
    with pytest.raises(UsageError, match="--device cuda:2: torch sees 2 GPU.s. here, cuda:0 to"):
        distributed.checked_device("cuda:2", "--device")
    with pytest.raises(UsageError, match="--buffer-device cuda:5: torch sees 2"):
        distributed.checked_device("cuda:5", "--buffer-device")
