"""Run by tests/test_distributed.py under torchrun: train, stop early or resume from Python.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py \
        MODE LOGDIR ALG ENV_ID [KEY=VALUE ...]

MODE: train (to num_train_steps), stop (checkpoint and stop at stop_after=VALUE of the
`stop` key) or resume (derl.resume(LOGDIR)). Values are read as Python literals.
"""

import ast
import sys

import derl

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
else:
    config = derl.make_config(alg, env_id, logdir=logdir, device="cpu", **values)
    derl.train(config, progress=False, stop_after=stop)
