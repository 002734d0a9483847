import sys

from bench.intervals.cli import main

sys.exit(main())
