"""``python -m shared.cli``: the ``switchyard`` command."""

import sys

from shared.cli import main

sys.exit(main())
