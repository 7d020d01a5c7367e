"""``python -m labkit.serve.healthcheck [URL]``: exit 0 when ``handoff serve`` answers ready.

A container health check (the Dockerfile's ``HEALTHCHECK``) needs a probe that the slim image
has: no curl, so Python's standard library. The default URL is the readiness endpoint on
``127.0.0.1:$LABKIT_PORT`` (8000); a bearer token is not needed (health endpoints are open).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

__all__ = ["PORT_ENV", "main"]

PORT_ENV = "LABKIT_PORT"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    port = os.environ.get(PORT_ENV, "8000")
    url = args[0] if args else f"http://127.0.0.1:{port}/v2/health/ready"
    if not url.startswith(("http://", "https://")):
        print(f"healthcheck: {url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - checked above
            ready = response.status == 200
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"healthcheck: not ready: {exc}", file=sys.stderr)
        return 1
    return 0 if ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
