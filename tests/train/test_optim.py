"""The trainer's Adam is torch.optim.Adam(fused=True), step for step, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch

from omnifuse.train.optim import FusedAdam


def test_fused_adam_takes_the_same_steps_as_torch_adam():
    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
        net[0].bias.requires_grad_(False)  # frozen parameters are left alone
        return net

    ours, ref = model(), model()
    opt_ours = FusedAdam(ours.parameters(), lr=3e-3, weight_decay=1e-2)
    opt_ref = torch.optim.Adam(
        [p for p in ref.parameters() if p.requires_grad], lr=3e-3, weight_decay=1e-2, fused=True
    )
    g = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.randn(16, 5, generator=g)
        for net, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            loss = net(x).pow(2).mean()
            if step == 3:  # a parameter without a gradient this step keeps its state
                loss = net[2](x @ torch.ones(5, 7)).sum()
            loss.backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(ours[0].weight, model()[0].weight)


def test_the_trainer_does_not_import_the_compiler():
    code = (
        "import sys, torch\n"
        "from omnifuse.train.loop import make_optimizer\n"
        "from omnifuse.train.config import TrainConfig\n"
        "net = torch.nn.Linear(3, 1)\n"
        "opt = make_optimizer(net, TrainConfig())\n"
        "net(torch.ones(2, 3)).sum().backward(); opt.step(); opt.zero_grad()\n"
        "print(type(opt).__name__, 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["FusedAdam", "False"]
