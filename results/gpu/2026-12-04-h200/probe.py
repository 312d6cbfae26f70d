"""One-off GPU probe: why derl's PPO Breakout is slower than SB3 on CUDA."""
import dataclasses, os, cProfile, io, pstats, sys, tempfile, time
sys.path.insert(0, "benchmarks")
import torch
torch.set_num_threads(4)
import derl, derl.models as M
from bench_ppo import run_sb3, derl_config

what, steps = sys.argv[1], int(sys.argv[2])
if what == "sb3":
    n, s = run_sb3("ppo", "BreakoutNoFrameskip-v4", steps, 0, os.environ.get("DEV", "cuda"), 0)
    print(f"RESULT sb3 {n} steps {s:.1f}s {n/s:.0f}/s", flush=True); sys.exit()
if "nchw" in what:
    init = M.NatureCNN.__init__
    def __init__(self, *a, **k):
        init(self, *a, **k); self.net.to(memory_format=torch.contiguous_format)
    M.NatureCNN.__init__ = __init__
    M.NatureCNN.forward = lambda self, obs: self.net(obs.float().div_(255.0))
with tempfile.TemporaryDirectory() as tmp:
    c = derl_config("ppo", "BreakoutNoFrameskip-v4", steps, 0, os.environ.get("DEV", "cuda"), tmp + "/r", 0)
    c = dataclasses.replace(c, deterministic="det" in what)
    prof = cProfile.Profile() if "prof" in what else None
    t = time.perf_counter()
    if prof: prof.enable()
    r = derl.train(c, progress=False)
    if prof: prof.disable()
    s = time.perf_counter() - t
    print(f"RESULT derl-{what} {r.env_steps} steps {s:.1f}s {r.env_steps/s:.0f}/s", flush=True)
    if prof:
        out = io.StringIO(); pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
        print(out.getvalue()[-5000:])
