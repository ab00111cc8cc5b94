"""Time `ddpm-verify check-sampler` and `check-loss` on a T = 1000 DDPM over (n, 3, 32, 32) images.

Each command runs in a fresh process (imports included), on the plain from-scratch loop and loss
below. Printed: the wall time of each command, and its ratio to one run of the workload itself
in this process (the sampler at the n the check chose, the loss on one batch of 64), measured in
the same run.

    python benchmarks/end_to_end.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

T, SHAPE = 1000, (3, 32, 32)


class Workload:
    """Algorithm 2 and L_simple of Ho et al., written the plain way (float32 tables, 0-based t)."""

    timesteps, prediction_type, process, objective = "index", "epsilon", "ddpm_fixed_small", "epsilon_mse"
    data_shape = SHAPE

    def __init__(self):
        self.betas = torch.linspace(1e-4, 0.02, T)
        self.alphas = 1 - self.betas
        self.abar = torch.cumprod(self.alphas, 0)
        self.abar_prev = torch.cat([torch.ones(1), self.abar[:-1]])

    @torch.no_grad()
    def sample(self, model, n):
        x = torch.randn(n, *SHAPE)
        for i in reversed(range(T)):
            eps = model(x, torch.full((n,), i, dtype=torch.long))
            x = (x - self.betas[i] / torch.sqrt(1 - self.abar[i]) * eps) / torch.sqrt(self.alphas[i])
            if i > 0:
                x = x + torch.sqrt(self.betas[i] * (1 - self.abar_prev[i]) / (1 - self.abar[i])) * torch.randn_like(x)
        return x

    def loss(self, model, x0):
        t = torch.randint(0, T, (x0.shape[0],))
        noise = torch.randn_like(x0)
        ab = self.abar[t].view(-1, 1, 1, 1)
        return torch.nn.functional.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t), noise)


def _command(kind: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ddpm_verify.cli", f"check-{kind}", "end_to_end:Workload", "--json",
                        str(path)], cwd=Path(__file__).parent, capture_output=True, check=False,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
        return time.perf_counter() - start, json.loads(path.read_text())


def _n_chosen(report: dict) -> int:
    line = next(r["detail"] for r in report["results"] if r["name"] == "convention: samples")
    return int(line.split("n = ")[1].split()[0])


def main() -> None:
    sampler_s, sampler_report = _command("sampler")
    loss_s, loss_report = _command("loss")
    from ddpm_verify.endtoend.oracle import OracleData, OracleModel, groups
    import reference
    work = Workload()
    n = _n_chosen(sampler_report)
    model = OracleModel(OracleData.build(3 * 32 * 32, groups(False)), reference.Schedule(work.betas.double().numpy()),
                        SHAPE, "index", "epsilon")
    start = time.perf_counter()
    work.sample(model, n)
    one_run = time.perf_counter() - start
    x0 = torch.randn(64, *SHAPE)
    start = time.perf_counter()
    for _ in range(20):
        model.calls.clear()
        work.loss(model, x0)
    one_loss = (time.perf_counter() - start) / 20
    print(f"check-sampler, T = {T}, (n, {', '.join(map(str, SHAPE))}), n = {n}: {sampler_s:.1f} s "
          f"(exit {sampler_report['exit_status']}), {sampler_s / one_run:.1f}x one run of the loop with the oracle "
          f"network ({one_run:.2f} s)")
    print(f"check-loss, T = {T}, (64, {', '.join(map(str, SHAPE))}) batches: {loss_s:.1f} s "
          f"(exit {loss_report['exit_status']}), {loss_s / one_loss:.0f}x one loss call ({one_loss * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
