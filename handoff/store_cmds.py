"""``handoff promote``, ``rollback`` and ``push``: moving aliases and publishing bundles.

Every store argument may be a local path, a ``file://`` URL or an fsspec URL (``s3://``,
``gs://``; ``pip install 'labkit[remote]'``). A version is verified here, on this host,
before an alias is moved to it: integrity, the signature when keys are given, and the golden
self-test of every variant — what ``handoff verify`` checks.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.bundle.aliases import DEFAULT_ALIAS, Alias, AliasEvent, check_alias
from labkit.bundle.location import is_remote, local_path, split_bundle_url
from labkit.errors import LabkitError, StoreError

__all__ = ["add_store_parsers", "alias_lines", "verify_here"]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def actor() -> str:
    """Who moved an alias, for its history: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Checked:
    ok: bool
    failures: list[str]
    signer: str | None
    reports: list[Any]


def verify_here(path: Path, trusted_keys: list[str] | None) -> Checked:
    """``handoff verify``'s checks: integrity, then the signature (when keys are given) before
    any session, then the golden self-test of every variant on this machine."""
    from labkit.runtime import Model, verify

    vb = verify(path)
    signer = None
    if trusted_keys:
        from labkit.runtime.signing import check_signature, load_trusted_keys

        signer = check_signature(vb, load_trusted_keys(trusted_keys)).fingerprint
    reports = [Model(vb, v.name, None).self_test() for v in vb.manifest.variants]
    failures = [f"{r.variant}: {f}" for r in reports for f in r.failures]
    return Checked(not failures, failures, signer, reports)


def _open(location: str) -> Any:
    from labkit.runtime.remote import open_store

    return open_store(location)


def _split_version(arg: str) -> tuple[str, str, str]:
    if is_remote(arg):
        return split_bundle_url(arg)
    path = local_path(arg)
    _, name, version = split_bundle_url(str(path))
    return str(path.parent.parent), name, version


def _split_model(arg: str) -> tuple[str, str]:
    stripped = arg.rstrip("/")
    store, _, name = stripped.rpartition("/")
    if not store or not name:
        raise StoreError(f"{arg} is not STORE/NAME")
    return (store if is_remote(arg) else str(local_path(store))), name


def _checked_version(store: Any, name: str, version: str, keys: list[str] | None) -> Checked:
    if version not in store.versions(name):
        raise StoreError(
            f"no version {version} of {name!r} in {store.root}; it has: "
            f"{', '.join(store.versions(name)) or 'none'}"
        )
    try:
        return verify_here(store.local_path(name, version), keys)
    except LabkitError as exc:
        return Checked(False, [str(exc)], None, [])


def _refuse(what: str, name: str, version: str, checked: Checked) -> int:
    print(
        f"handoff: error: refusing to {what} {name} {version}: it does not verify on this "
        f"host: {'; '.join(checked.failures)}",
        file=sys.stderr,
    )
    return 1


def _moved(alias: str, name: str, event: AliasEvent | None, before: Alias | None) -> str:
    if event is None:
        return f"{name}: {alias} already points at {before.version if before else '?'}"
    was = f" (was {event.previous})" if event.previous else ""
    return (
        f"{name}: {alias} → {event.version}{was}, generation {event.generation}; a server "
        "picks it up within its reload interval"
    )


def cmd_promote(args: argparse.Namespace) -> int:
    from labkit.bundle import aliases

    alias = check_alias(args.alias)
    store_loc, name, version = _split_version(args.bundle)
    store = _open(store_loc)
    checked = _checked_version(store, name, version, args.trusted_key)
    if not checked.ok:
        return _refuse("promote", name, version, checked)
    before, event = aliases.promote(store.files, name, alias, version, by=actor(), note=args.note)
    if args.json:
        now = store.alias(name, alias).to_dict()
        _print_json({"name": name, "alias": now, "moved": event is not None})
    else:
        print(_moved(alias, name, event, before))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from labkit.bundle import aliases

    alias = check_alias(args.alias)
    store_loc, name = _split_model(args.model)
    store = _open(store_loc)
    current, target = aliases.plan_rollback(store.files, name, alias)
    checked = _checked_version(store, name, target, args.trusted_key)
    if not checked.ok:
        return _refuse("roll back to", name, target, checked)
    event = aliases.move(
        store.files,
        name,
        alias,
        target,
        action="rollback",
        expect=current,
        by=actor(),
        note=args.note,
    )
    if args.json:
        _print_json({"name": name, "alias": store.alias(name, alias).to_dict(), "moved": True})
    else:
        print(_moved(alias, name, event, current))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from labkit.runtime.remote import RemoteStore

    url: object
    if not is_remote(args.store):
        from labkit.runtime.transfer import copy_into

        url, moved = copy_into(args.bundle, local_path(args.store))
    else:
        from labkit.runtime.transfer import push

        def said(rel: str) -> None:
            if not args.json:
                print(f"  uploaded {rel}", file=sys.stderr)

        url, moved = push(args.bundle, RemoteStore(args.store), on_file=said)
    if args.json:
        _print_json({"url": str(url), "published": moved})
    else:
        print(f"{url}: {'published' if moved else 'already there, unchanged'}")
    return 0


def alias_lines(aliases: dict[str, Alias], version: str | None = None, last: int = 5) -> list[str]:
    """Text for ``list`` and ``inspect``: each alias, where it points, its latest moves."""
    lines = []
    for name, alias in sorted(aliases.items()):
        if version is not None and version not in alias.targets():
            continue
        back = alias.rollback_target()
        lines.append(
            f"alias {name} → {alias.version} (generation {alias.generation}"
            + (f"; rollback goes to {back}" if back else "")
            + ")"
        )
        for e in list(reversed(alias.history))[:last]:
            lines.append(
                f"  {e.generation:>4} {e.at} {e.action:<8} {e.previous or '-'} → {e.version}"
                + (f" by {e.by}" if e.by else "")
                + (f": {e.note}" if e.note else "")
            )
        if len(alias.history) > last:
            lines.append(f"  … {len(alias.history) - last} earlier (handoff list --json)")
    return lines


def add_store_parsers(sub: argparse._SubParsersAction) -> None:
    def keys(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trusted-key",
            metavar="PUB.pem",
            action="append",
            default=None,
            help="also require a signature by one of these public keys (repeatable)",
        )
        p.add_argument("--note", default=None, help="why, recorded in the alias history")
        p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "promote",
        help="point an alias (default prod) at a version, after verifying it on this host",
    )
    p.add_argument("bundle", metavar="STORE/NAME/VERSION")
    p.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default {DEFAULT_ALIAS}")
    keys(p)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="move an alias back to its previous target")
    p.add_argument("model", metavar="STORE/NAME")
    p.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default {DEFAULT_ALIAS}")
    keys(p)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser(
        "push",
        help="publish a bundle into a store (s3://, gs://, file:// or a path); the "
        "version appears only once every file is there",
    )
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_push)
