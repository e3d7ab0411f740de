"""``python -m simplecnn``: the same as the ``simplecnn`` command."""

import sys

from .cli import main

sys.exit(main())
