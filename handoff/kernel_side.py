"""Runs inside the notebook's kernel for ``handoff export notebook.ipynb``.

The models live in the kernel, so the handoff runs there; each line this prints starts
with a marker and carries one JSON message (progress, result or error) back to the CLI.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.errors import LabkitError


def _say(marker: str, msg: dict[str, Any]) -> None:
    print(marker + json.dumps(msg), flush=True)


def handoff_registered(args: dict[str, Any], marker: str) -> None:
    from handoff.export_options import handoff_options
    from labkit.pipeline import run
    from labkit.registry import registered

    opts = args["options"]
    specs = list(registered().values())
    if not specs:
        _say(marker, {"kind": "error", "type": "RegistrationError",
                      "message": "the notebook ran but registered no model; add a cell with "
                                 "labkit.register(model, example_inputs, name=...)"})
        return
    if opts.get("name") and len(specs) > 1:
        _say(marker, {"kind": "error", "type": "RegistrationError",
                      "message": f"--name was given but the notebook registered {len(specs)} "
                                 f"models ({', '.join(s.name for s in specs)}); drop --name"})
        return
    options = handoff_options(opts)
    for spec in specs:
        try:
            result = run(spec, store=args.get("store"), options=options,
                         source=args.get("source"), sign_key=opts.get("sign_key"),
                         progress=lambda e: _say(marker, {"kind": "progress",
                                                          "event": e.to_dict()}))
        except LabkitError as exc:
            _say(marker, {"kind": "error", "type": type(exc).__name__, "message": str(exc)})
            return
        _say(marker, {"kind": "result", "result": result.to_dict()})
