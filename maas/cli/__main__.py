"""`python -m maas.cli`: the `maas` command where its script is not on PATH."""

import sys

from maas.cli import main

sys.exit(main())
