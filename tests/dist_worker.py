"""Run by tests/test_distributed.py under torchrun: train, stop early or resume from Python.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py \
        MODE LOGDIR ALG ENV_ID [KEY=VALUE ...]

MODE: train (to num_train_steps), stop (checkpoint and stop at stop_after=VALUE of the
`stop` key) or resume (derl.resume(LOGDIR)). Values are read as Python literals. Mode `each`
trains one run per ALG:ENV_ID pair of ALG (comma-separated) into LOGDIR/ALG, in these
processes one after the other (one start-up for all), with the keys each algorithm has. Mode
`collectives` calls derl.distributed's helpers on inputs that differ between the ranks and saves
what each rank got to LOGDIR/rank-R.pt (ALG and ENV_ID are unused).
"""

import ast
import dataclasses
import sys

import derl
from derl.factory import get_alg

mode, logdir, alg, env_id, *pairs = sys.argv[1:]
values = {}
for pair in pairs:
    key, text = pair.split("=", 1)
    try:
        values[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        values[key] = text
stop = values.pop("stop", None)
if mode == "collectives":
    import torch
    import torch.distributed as dist

    from derl import distributed

    dist.init_process_group("gloo")
    rank = distributed.rank()
    # Four parameters: `a` has a gradient on both ranks, `b` on rank 0 only, `c` on rank 1 only,
    # `d` on neither (a branch no batch took).
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(4)]
    given = {"a": (0, 1), "b": (0,), "c": (1,), "d": ()}
    for p, ranks in zip(params, given.values(), strict=True):
        if rank in ranks:
            p.grad = torch.full((3,), float(rank + 1))
    distributed.average_gradients(params)
    torch.save(
        {
            "grads": {k: p.grad for k, p in zip(given, params, strict=True)},
            "all_true": [distributed.all_true(rank == 0), distributed.all_true(True)],
        },
        f"{logdir}/rank-{rank}.pt",
    )
    dist.destroy_process_group()
elif mode == "resume":
    derl.resume(logdir, progress=False, stop_after=stop)
elif mode == "each":
    for pair in alg.split(","):
        name, env = pair.split(":")
        fields = {f.name for f in dataclasses.fields(get_alg(name).config_cls)}
        own = {k: v for k, v in values.items() if k in fields}  # e.g. no replay keys for PPO
        config = derl.make_config(name, env, logdir=f"{logdir}/{name}", device="cpu", **own)
        derl.train(config, progress=False)
else:
    config = derl.make_config(alg, env_id, logdir=logdir, device="cpu", **values)
    derl.train(config, progress=False, stop_after=stop)
