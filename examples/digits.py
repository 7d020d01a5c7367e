"""The bundled example: a small MLP on scikit-learn's 8×8 digits (ships inside scikit-learn).

    handoff export examples/digits.py:build

trains for a few seconds on 2 cores, registers the model with real held-out digits as
parity and calibration data, and returns the ModelSpec for the handoff.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import labkit


class DigitsMLP(torch.nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
    )


def train(seed: int = 0, epochs: int = 30, hidden: int = 256) -> tuple[DigitsMLP, float]:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_data()
    model = DigitsMLP(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return model, accuracy


def build() -> labkit.ModelSpec:
    seed = int(os.environ.get("DIGITS_SEED", "0"))
    model, accuracy = train(seed)
    print(f"trained DigitsMLP (seed {seed}): held-out accuracy {accuracy:.3f}")
    _, _, x_test, _ = load_data()
    return labkit.register(
        model,
        x_test[:8],
        name="digits-mlp",
        task="classification",
        labels=[str(d) for d in range(10)],
        parity_inputs=[x_test[i : i + 64] for i in range(0, len(x_test), 64)],
    )
