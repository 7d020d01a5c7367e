"""Issue 15 item 6: the Dockerfile and the KServe example, checked as far as this machine
allows (no Docker engine, no cluster).

- The Dockerfile is parsed and its rules checked: slim Python base, a non-root numeric USER
  in the final stage with nothing run as root after it, a HEALTHCHECK, ``handoff serve`` as
  the entry point on the store path and port its ENV and EXPOSE name, profiles outside the
  store, no torch in the extras.
- The image's entry command (ENTRYPOINT + CMD, with ENV) runs here without Docker against a
  real store: it serves, its HEALTHCHECK command passes, ``--tune`` writes the host profile
  to ``$LABKIT_PROFILE_DIR`` and not a byte of the (read-only) store changes.
- The KServe ServingRuntime and InferenceService validate against a schema of KServe's
  fields (tests/deploy/kserve_schema.json), the runtime's args parse with ``handoff serve``'s
  own parser, and ports, probes, paths and user agree with the Dockerfile.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from bundle_factory import small_manifest

from labkit.bundle.writer import write_bundle

ROOT = Path(__file__).resolve().parent.parent
yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str
    stage: int  # 0 for ARGs before the first FROM, then 1, 2, ...

    @property
    def exec_form(self) -> list[str]:
        value = json.loads(self.rest)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self.rest
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (what Docker reads)."""
    out: list[Instruction] = []
    stage, pending = 0, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full, pending = pending + line, ""
        keyword, _, rest = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, rest.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


DOCKERFILE = parse_dockerfile((ROOT / "Dockerfile").read_text())
FINAL = max(i.stage for i in DOCKERFILE)


def _final(keyword: str) -> list[Instruction]:
    return [i for i in DOCKERFILE if i.keyword == keyword and i.stage == FINAL]


def _env() -> dict[str, str]:
    """ENV of the final stage (``ENV K=V K2=V2`` form)."""
    env: dict[str, str] = {}
    for i in _final("ENV"):
        for pair in shlex.split(i.rest):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {pair!r}: use the KEY=VALUE form"
            env[key] = value
    return env


def _args_default(name: str) -> str:
    for i in DOCKERFILE:
        if i.keyword == "ARG" and i.rest.startswith(f"{name}="):
            return i.rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name} with a default")


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_dockerfile_rules() -> None:
    # a slim Python base with an explicit tag, for every stage
    base = _args_default("PYTHON_IMAGE")
    assert base.startswith("python:") and "-slim" in base and not base.endswith(":latest")
    froms = [i.rest.split()[0] for i in DOCKERFILE if i.keyword == "FROM"]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    # no torch, notebook or dev extras in the image
    for i in DOCKERFILE:
        if i.keyword == "ARG" and i.rest.startswith("EXTRAS="):
            extras = set(i.rest.split("=", 1)[1].split(","))
            assert "serve" in extras and not extras & {"export", "notebook", "dev", "ray"}
    # non-root, numeric (Kubernetes' runAsNonRoot can check it), and nothing as root after it
    (user,) = _final("USER")
    uid, _, gid = user.rest.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0)
    after_user = DOCKERFILE[DOCKERFILE.index(user) :]
    assert not [i for i in after_user if i.keyword in ("RUN", "COPY", "ADD")]
    # the final stage copies no source tree (only the wheels, through a bind mount)
    assert not _final("COPY") and not [i for i in DOCKERFILE if i.keyword == "ADD"]
    (install,) = _final("RUN")
    assert "--no-cache-dir" in install.rest and "--no-index" in install.rest
    # serve the store on the port the ENV and EXPOSE name
    env = _env()
    (entry,) = _final("ENTRYPOINT")
    (cmd,) = _final("CMD")
    argv = entry.exec_form + cmd.exec_form
    assert argv[:2] == ["handoff", "serve"]
    assert argv[2] == env["LABKIT_STORE"]
    assert _flag(argv, "--port") == env["LABKIT_PORT"]
    (expose,) = _final("EXPOSE")
    assert expose.rest == env["LABKIT_PORT"]
    assert _flag(argv, "--host") == "0.0.0.0"  # inside a container, published by the runtime
    # profiles outside the store, in a folder the user owns
    profiles = env["LABKIT_PROFILE_DIR"]
    assert not Path(profiles).is_relative_to(env["LABKIT_STORE"])
    assert f"chown -R {uid}:{gid or uid} {str(Path(profiles).parent)}" in install.rest
    # a health check that needs no curl
    (health,) = _final("HEALTHCHECK")
    options, _, probe = health.rest.partition(" CMD ")
    assert json.loads(probe) == ["python", "-m", "labkit.serve.healthcheck"]
    for opt in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert opt in options, opt
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "extension/node_modules", "bundles", ".git"} <= set(ignored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    store: Path
    profiles: Path
    before: dict[str, tuple[int, int]]
    log: Path


@pytest.fixture()
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The image's ENTRYPOINT + CMD and ENV, run here: ``handoff`` is this checkout's, the
    store and profile folders are temporary ones, the port a free one, the host loopback."""
    tmp = tmp_path_factory.mktemp("container")
    manifest, files = small_manifest("tiny")
    store = tmp / "models"
    write_bundle(store, "tiny", "1.0.0", files, manifest)
    for path in [store, *store.rglob("*")]:  # mounted read-only
        path.chmod(0o555 if path.is_dir() else 0o444)
    port = _free_port()
    env = _env()
    env.update(
        LABKIT_STORE=str(store), LABKIT_PROFILE_DIR=str(tmp / "profiles"), LABKIT_PORT=str(port)
    )
    (entry,) = _final("ENTRYPOINT")
    (cmd,) = _final("CMD")
    argv = [*entry.exec_form, *cmd.exec_form]
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[2] = str(store)
    argv = [sys.executable, "-m", *argv, "--tune", "--tune-budget-s", "2"]
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    log = tmp / "server.log"
    before = _snapshot(store)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    box = Container(
        proc, f"http://127.0.0.1:{port}", full_env, store, tmp / "profiles", before, log
    )
    try:
        deadline = time.monotonic() + 120  # the HEALTHCHECK's --start-period
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            health = subprocess.run(
                [sys.executable, "-m", "labkit.serve.healthcheck"],
                env=full_env,
                capture_output=True,
                timeout=30,
            )
            if health.returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"never healthy:\n{log.read_text()}")
        yield box
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        for path in [store, *store.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_the_images_entry_command_serves_a_read_only_store(container: Container) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2.0]}]}
    r = httpx.post(f"{container.url}/v2/models/tiny/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1.5, -2.0]
    profiles = list(container.profiles.rglob("*.json"))
    assert [p.relative_to(container.profiles).parts[:2] for p in profiles] == [("tiny", "1.0.0")]
    assert "tuned" in container.log.read_text()
    # what the KServe runtime's probes and Prometheus annotations point at answers
    runtime = _load_yaml("servingruntime.yaml")
    (c,) = runtime["spec"]["containers"]  # type: ignore[index]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        r = httpx.get(container.url + c[probe]["httpGet"]["path"], timeout=10)
        assert r.status_code == 200, (probe, r.text)
    metrics_path = runtime["metadata"]["annotations"]["prometheus.kserve.io/path"]  # type: ignore[index]
    assert "labkit_" in httpx.get(container.url + metrics_path, timeout=10).text
    container.proc.send_signal(signal.SIGTERM)
    assert container.proc.wait(60) == 0
    assert _snapshot(container.store) == container.before  # not a byte, not a new entry


def _load_yaml(name: str) -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "deploy" / "kserve" / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_kserve_examples_validate_and_agree_with_the_image() -> None:
    schemas = json.loads((ROOT / "tests" / "deploy" / "kserve_schema.json").read_text())
    runtime = _load_yaml("servingruntime.yaml")
    isvc = _load_yaml("inferenceservice.yaml")
    for doc, kind in ((runtime, "ServingRuntime"), (isvc, "InferenceService")):
        validator = jsonschema.Draft202012Validator(schemas[kind])
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, errors
    # a typo is caught (the schema is closed where the examples live)
    broken = json.loads(json.dumps(runtime))
    broken["spec"]["containers"][0]["readinesProbe"] = {}
    assert list(jsonschema.Draft202012Validator(schemas["ServingRuntime"]).iter_errors(broken))

    spec = runtime["spec"]
    assert isinstance(spec, dict)
    (c,) = spec["containers"]
    port = c["ports"][0]["containerPort"]
    # args replace the image's CMD after its ENTRYPOINT (handoff serve), and parse as such
    from handoff.cli import build_parser

    (entry,) = _final("ENTRYPOINT")
    args = build_parser().parse_args([*entry.exec_form[1:], *c["args"]])
    assert args.command == "serve" and args.source == "/mnt/models"  # KServe's model mount
    assert args.port == port and args.host == "0.0.0.0"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["LABKIT_PORT"] == str(port)  # the image's HEALTHCHECK probes this port
    for probe, path in (
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
        ("startupProbe", "/v2/health/ready"),
    ):
        assert c[probe]["httpGet"] == {"path": path, "port": port}
    # the Dockerfile's user, and a writable profile folder on a read-only root filesystem
    (user,) = _final("USER")
    sc = c["securityContext"]
    assert str(sc["runAsUser"]) == user.rest.split(":")[0] and sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert env["LABKIT_PROFILE_DIR"] in mounts
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts[env["LABKIT_PROFILE_DIR"]]]
    # the InferenceService asks for what the runtime offers
    model = isvc["spec"]["predictor"]["model"]  # type: ignore[index]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["runtime"] == runtime["metadata"]["name"]  # type: ignore[index]
    assert model["protocolVersion"] in spec["protocolVersions"]
