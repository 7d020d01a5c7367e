"""gRPC is held to REST's limits, from the same data plane: the in-flight cap and the body
memory budget are shared (an inference already admitted over REST counts against gRPC), the
message size cap is enforced before the message is parsed, and overload answers UNAVAILABLE
with ``retry-after``, as Triton answers a full queue."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp  # noqa: E402

grpc = pytest.importorskip("grpc")
from labkit.serve.admission import Ticket  # noqa: E402
from labkit.serve.config import ServeConfig  # noqa: E402
from labkit.serve.core import DataPlane  # noqa: E402
from labkit.serve.grpc_front import GrpcFront  # noqa: E402
from labkit.serve.grpc_proto import messages  # noqa: E402

MiB = 1 << 20


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_mlp(root)
    return root


def _request(rows: int) -> bytes:
    m = messages()["ModelInferRequest"](model_name="mlp")
    m.inputs.add(name="input_0", datatype="FP32", shape=[rows, 8])
    m.raw_input_contents.append(np.ones((rows, 8), np.float32).tobytes())
    return bytes(m.SerializeToString())


def test_grpc_shares_rest_limits(store: Path) -> None:
    config = ServeConfig(
        reload_interval_s=0, max_inflight=1, max_body_bytes=MiB, max_body_budget_bytes=MiB
    )

    async def scenario() -> dict[str, object]:
        plane = DataPlane(store, config)
        await plane.start()
        front = GrpcFront(plane)
        port = await front.start("127.0.0.1", 0)
        seen: dict[str, object] = {}
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
                ok = messages()["ModelInferResponse"].FromString(await call(_request(2)))
                seen["ok"] = (ok.model_version, list(ok.outputs[0].shape))
                held = Ticket()  # an inference admitted elsewhere (e.g. over REST)
                plane.admission.admit(held)
                try:
                    await call(_request(2))
                except grpc.aio.AioRpcError as exc:
                    seen["inflight"] = (exc.code(), exc.details(), dict(exc.trailing_metadata()))
                plane.admission.release(held)
                plane.admission.hold(held, 900 * 1024)  # bodies already held: near the budget
                try:
                    await call(_request(8000))  # 256 KiB
                except grpc.aio.AioRpcError as exc:
                    seen["memory"] = (exc.code(), exc.details())
                plane.admission.release(held)
                try:
                    await call(_request(40000))  # 1.2 MiB: over the message cap
                except grpc.aio.AioRpcError as exc:
                    seen["size"] = exc.code()
                again = messages()["ModelInferResponse"].FromString(await call(_request(1)))
                seen["again"] = list(again.outputs[0].shape)
        finally:
            await front.stop(1.0)
            await plane.stop()
        seen["metrics"] = plane.metrics.render().decode()
        return seen

    seen = asyncio.run(scenario())
    assert seen["ok"] == ("1.0.0", [2, 3])
    code, details, trailing = seen["inflight"]  # type: ignore[misc]
    assert code == grpc.StatusCode.UNAVAILABLE and "more than 1 inferences in flight" in details
    assert trailing.get("retry-after") == "1"
    code, details = seen["memory"]  # type: ignore[misc]
    assert code == grpc.StatusCode.UNAVAILABLE and "memory budget" in details
    assert seen["size"] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert seen["again"] == [1, 3]  # nothing leaked: the slot and the bytes came back
    metrics = str(seen["metrics"])
    assert 'labkit_rejected_total{reason="inflight"} 1.0' in metrics
    assert 'labkit_rejected_total{reason="memory"} 1.0' in metrics
    assert "labkit_inflight_requests 0.0" in metrics
