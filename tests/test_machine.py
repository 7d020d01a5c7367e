"""Cores come from the affinity mask *and* the cgroup CPU quota (issue 15: "thread counts
ignore the cgroup CPU quota"): a container given 2 CPUs' worth of time on a 16-core host
must not run 16 threads. The cgroup files are faked under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.runtime import machine
from labkit.runtime.machine import cgroup_cpu_limit


def _fake(tmp: Path, kind: str, group: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A /proc/self/cgroup and /proc/self/mountinfo pair pointing at a fake hierarchy."""
    root = tmp / "sys" / "fs" / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if kind == "v2":
        cgroup = f"0::{group}\n"
        mount = f"30 23 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    else:
        cgroup = f"4:memory:{group}\n3:cpu,cpuacct:{group}\n0::/\n"
        mount = f"32 31 0:29 / {root} rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    (tmp / "cgroup").write_text(cgroup)
    (tmp / "mountinfo").write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + mount)
    return tmp / "cgroup", tmp / "mountinfo"


@pytest.mark.parametrize(
    ("kind", "files", "want"),
    [
        ("v2", {"cpu.max": "max 100000\n", "kube/pod/cpu.max": "150000 100000\n"}, 1.5),
        # A parent's limit binds a child without one.
        ("v2", {"kube/cpu.max": "200000 100000\n", "kube/pod/cpu.max": "max 100000\n"}, 2.0),
        ("v2", {"kube/pod/cpu.max": "max 100000\n"}, None),
        ("v2", {}, None),
        (
            "v1",
            {"kube/pod/cpu.cfs_quota_us": "300000\n", "kube/pod/cpu.cfs_period_us": "100000\n"},
            3.0,
        ),
        (
            "v1",
            {"kube/pod/cpu.cfs_quota_us": "-1\n", "kube/pod/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        ("v2", {"kube/pod/cpu.max": "garbage\n"}, None),
    ],
)
def test_the_quota_is_read_from_the_cgroup_and_its_parents(
    tmp_path: Path, kind: str, files: dict[str, str], want: float | None
) -> None:
    cgroup, mountinfo = _fake(tmp_path, kind, "/kube/pod", files)
    assert cgroup_cpu_limit(cgroup, mountinfo) == want


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "none") is None


def test_the_quota_caps_every_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """One home: load()'s default threads, profile bounds and tune all read physical_cores,
    which the quota caps (rounded up, at least 1)."""
    from labkit.runtime import profile

    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda *a, **k: 0.5)
    assert machine.usable_cpus() == 1 and machine.physical_cores() == 1
    assert profile.host()["physical_cores"] == 1
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda *a, **k: 1000.0)
    assert machine.physical_cores() >= 1
    assert machine.usable_cpus() <= len(os.sched_getaffinity(0))


def test_an_untuned_model_never_runs_more_threads_than_the_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bundle_factory import wide_bundle

    import labkit.runtime as rt

    bundle = wide_bundle(tmp_path, 1)
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda *a, **k: 1.0)
    m = rt.load(bundle, profile=None)
    # The bundle records no cost, so without a quota this was the engine's own default.
    assert m.candidate.threads == 1 and m.running["threads"] == 1
