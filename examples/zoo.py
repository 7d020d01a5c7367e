"""Small reference architectures written with torch.nn only (no torchvision here).

Each ``build_*`` function returns a ModelSpec, so any of them can be handed off with
``handoff export examples/zoo.py:build_cnn``. ``ZOO_SEED`` changes the weights (a retrain),
``ZOO_WIDE=1`` changes the architecture.
"""

from __future__ import annotations

import os

import torch
from torch import nn

import labkit


def _seed() -> int:
    return int(os.environ.get("ZOO_SEED", "0"))


def _wide() -> bool:
    return os.environ.get("ZOO_WIDE") == "1"


class MLP(nn.Module):
    def __init__(self, d_in: int = 256, hidden: int = 512, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Encoder(nn.Module):
    def __init__(
        self, vocab: int = 1000, d: int = 128, heads: int = 4, layers: int = 2, classes: int = 4
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, 64, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, heads, dim_feedforward=4 * d, batch_first=True, dropout=0.0
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.encoder(h).mean(dim=1))


class LSTMClassifier(nn.Module):
    def __init__(self, d_in: int = 32, hidden: int = 128, classes: int = 5) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def _init(model: nn.Module) -> nn.Module:
    """Give BatchNorm non-trivial statistics, as a trained model would have."""
    g = torch.Generator().manual_seed(_seed() + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def build_mlp() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = MLP(hidden=768 if _wide() else 512)
    x = torch.randn(64, 256)
    return labkit.register(
        _init(model), x[:4], name="zoo-mlp", task="classification", parity_inputs=[x]
    )


def build_cnn() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = SmallCNN(width=48 if _wide() else 32)
    x = torch.rand(32, 3, 32, 32)
    return labkit.register(
        _init(model), x[:2], name="zoo-cnn", task="classification", parity_inputs=[x]
    )


def build_transformer() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = Encoder(layers=3 if _wide() else 2)
    tokens = torch.randint(0, 1000, (32, 32))
    return labkit.register(
        _init(model),
        tokens[:2],
        name="zoo-transformer",
        task="classification",
        dynamic_axes={"input_0": {1: "sequence"}},
        parity_inputs=[tokens],
    )


def build_lstm() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = LSTMClassifier(hidden=192 if _wide() else 128)
    x = torch.randn(32, 20, 32)
    return labkit.register(
        _init(model), x[:2], name="zoo-lstm", task="classification", parity_inputs=[x]
    )


class BertEncoder(nn.Module):
    """BERT-class: 6 layers, d=384, 6 heads, GELU, seq 128 (nn.TransformerEncoder)."""

    def __init__(
        self,
        vocab: int = 8000,
        d: int = 384,
        heads: int = 6,
        layers: int = 6,
        seq: int = 128,
        classes: int = 2,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.02)
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d, heads, dim_feedforward=4 * d, batch_first=True, dropout=0.0, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.embed(tokens) + self.pos[:, : tokens.shape[1]])
        return self.head(self.encoder(h)[:, 0])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18's layout (torchvision does not install here), 224×224 inputs."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_bert() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = BertEncoder()
    tokens = torch.randint(0, 8000, (16, 128))
    return labkit.register(
        _init(model),
        tokens[:2],
        name="zoo-bert",
        task="classification",
        dynamic_axes={"input_0": {1: "sequence"}},
        parity_inputs=[tokens],
    )


def build_resnet18() -> labkit.ModelSpec:
    torch.manual_seed(_seed())
    model = ResNet18()
    x = torch.rand(16, 3, 224, 224)
    return labkit.register(
        _init(model), x[:2], name="zoo-resnet18", task="classification", parity_inputs=[x]
    )
