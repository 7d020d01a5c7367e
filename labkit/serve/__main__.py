"""``python -m labkit.serve serve|export-triton ...`` (the same code as ``handoff``)."""

import sys

from labkit.serve.cli import main

sys.exit(main())
