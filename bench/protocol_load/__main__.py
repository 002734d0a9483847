"""`python -m bench.protocol_load`: see bench/protocol_load/__init__.py."""

import sys

from bench.protocol_load.cli import main

sys.exit(main())
