"""`python -m sieve_client ...`: the `sieve` command."""

import sys

from sieve_client.cli import main

sys.exit(main())
