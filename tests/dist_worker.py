"""Run by tests/test_distributed.py under torchrun: train, stop early or resume from Python.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py \
        MODE LOGDIR ALG ENV_ID [KEY=VALUE ...]

MODE: train (to num_train_steps), stop (checkpoint and stop at stop_after=VALUE of the
`stop` key) or resume (derl.resume(LOGDIR)). Values are read as Python literals. Mode `each`
trains one run per ALG:ENV_ID pair of ALG (comma-separated) into LOGDIR/ALG, in these
processes one after the other (one start-up for all), with the keys each algorithm has.
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
if mode == "resume":
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
