"""``python -m setr.cli`` (and ``torchrun -m setr.cli``): the ``setr`` command."""

import sys

from . import main

sys.exit(main())
