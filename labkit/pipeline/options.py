"""Options of a handoff, as frozen dataclasses with named presets.

They are translated into ONNX Runtime's option dicts in one place (``optimize.py``) and
recorded in the manifest, so a bundle says exactly how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.bundle.tolerance import Tolerance
from labkit.errors import LabkitError

# The stage list and progress events belong to the torch-free request vocabulary; re-exported
# here because the pipeline is what runs the stages.
from labkit.request import STAGES, ProgressEvent

__all__ = [
    "CALIBRATION_METHODS",
    "STAGES",
    "BenchOptions",
    "Budget",
    "HandoffOptions",
    "ProgressEvent",
    "Quantize",
]

#: static quantization's calibrators (ONNX Runtime's CalibrationMethod of the same name)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Quantize:
    """One quantized candidate: ``Quantize.dynamic_int8()`` or ``Quantize.static_int8()``."""

    name: str
    mode: str  # "dynamic" | "static"
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = False
    op_types: tuple[str, ...] = ()
    calibration_method: str = "minmax"  # one of CALIBRATION_METHODS; static mode only
    # Symmetric activations (zero point 0); with activation_type "int8" that is S8S8.
    activation_symmetric: bool = False
    # Quantize only MatMuls that multiply by a weight: activation × activation products
    # (attention's Q·Kᵀ and softmax·V) stay float.
    weights_only: bool = False

    def __post_init__(self) -> None:
        if self.calibration_method not in CALIBRATION_METHODS:
            raise LabkitError(
                f"Quantize {self.name!r}: calibration_method "
                f"{self.calibration_method!r} is not one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )

    @classmethod
    def dynamic_int8(cls) -> Quantize:
        # MatMul/RNN models. Convolutions are left in fp32: dynamically quantized convs
        # measured 2–3× slower than PyTorch eager (docs/performance.md).
        return cls(
            name="int8-dynamic",
            mode="dynamic",
            activation_type="uint8",
            weight_type="int8",
            op_types=("MatMul", "Gemm", "LSTM", "GRU", "Attention"),
        )

    @classmethod
    def static_int8(cls) -> Quantize:
        # Conv nets: QDQ with U8S8 fused every conv of a ResNet-18 into QLinearConv on x86;
        # S8S8 fused under half of them.
        return cls(
            name="int8-static",
            mode="static",
            activation_type="uint8",
            weight_type="int8",
            per_channel=True,
            op_types=(
                "Conv",
                "MatMul",
                "Gemm",
                "Add",
                "Mul",
                "Relu",
                "MaxPool",
                "AveragePool",
                "GlobalAveragePool",
                "Concat",
                "Flatten",
            ),
        )

    @classmethod
    def static_int8_transformer(cls) -> Quantize:
        # Transformers (MatMul-heavy, no convs): QDQ on the weight MatMuls only, S8S8
        # symmetric, per-channel weights. Measured with OpenVINO on a BERT-class encoder
        # (6 layers, d=384, seq 128, 2 cores with AMX): quantizing the attention products too
        # left them in float behind FakeQuantize ops (slower than bf16 alone), U8S8 with
        # its zero points ran at 0.8x bf16, S8S8 weights-only at about 1.5x bf16.
        return cls(
            name="int8-static",
            mode="static",
            activation_type="int8",
            weight_type="int8",
            per_channel=True,
            op_types=("MatMul", "Gemm"),
            activation_symmetric=True,
            weights_only=True,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        return d


@dataclass(frozen=True)
class Budget:
    """Accuracy a quantized variant must keep to be shipped."""

    min_top1_agreement: float = 0.99
    min_cosine: float = 0.99
    max_rel: float = 0.25

    def metric_min(self, metric: str) -> float:
        return float(self.tolerance(metric).min_metric or 0.0)

    def tolerance(self, metric: str) -> Tolerance:
        """The budget as the :class:`Tolerance` a candidate's parity is judged by."""
        return Tolerance.from_budget(asdict(self), metric)


@dataclass(frozen=True)
class BenchOptions:
    """How the benchmark stage times the variants (``labkit.pipeline.benchmark``).

    Calls are sized by time: per round, each runner makes about ``latency_s`` seconds of
    batch-1 calls (3 to ``latency_iters``) and ``throughput_s`` seconds of batch calls (1 to
    ``throughput_iters``), at its warm-up pace. No round starts that would end past
    ``budget_s`` (at least 3 run, or ``rounds`` if fewer); an inconsistent eager baseline is
    measured once more under the same budget.
    """

    rounds: int = 5
    latency_iters: int = 100
    throughput_batch: int = 64
    throughput_iters: int = 20
    threads: int | None = None
    warmup: int = 3
    latency_s: float = 0.1
    throughput_s: float = 0.3
    budget_s: float = 25.0

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(
            rounds=3,
            latency_iters=30,
            throughput_batch=16,
            throughput_iters=10,
            warmup=2,
            latency_s=0.05,
            throughput_s=0.1,
            budget_s=10.0,
        )


@dataclass(frozen=True)
class HandoffOptions:
    quantize: bool = True
    candidates: tuple[Quantize, ...] | None = None  # None: chosen from the graph's ops
    budget: Budget = field(default_factory=Budget)
    calibration: Path | None = None  # .npz with one array per input
    benchmark: bool = True
    bench: BenchOptions = field(default_factory=BenchOptions)
    parity_batch_sizes: tuple[int, ...] = (1, 3, 16)
    seed: int = 0
    opset: int = 18
    name: str | None = None  # overrides the registered name

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantize": self.quantize,
            "candidates": None
            if self.candidates is None
            else [c.to_dict() for c in self.candidates],
            "budget": asdict(self.budget),
            "calibration": str(self.calibration) if self.calibration else None,
            "benchmark": self.benchmark,
            "bench": asdict(self.bench),
            "parity_batch_sizes": list(self.parity_batch_sizes),
            "seed": self.seed,
            "opset": self.opset,
        }
