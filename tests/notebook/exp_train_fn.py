"""A training function importable by worker processes (``labkit.experiment(workers=N)``)."""

from __future__ import annotations

from typing import Any

import torch


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def build(hidden: int) -> torch.nn.Module:
    """The untrained architecture of a trial (``model_fn``)."""
    return torch.nn.Sequential(
        torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
    )


def train(hidden: int, steps: int = 60, lr: float = 0.05) -> dict[str, Any]:
    torch.manual_seed(hidden)
    x, y = data()
    model = build(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[:192]), y[:192])
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x[192:]).argmax(1) == y[192:]).float().mean())
    return {"model": model, "val_acc": acc, "loss": loss.item()}
