"""`python -m extract.jobs ...` (`torchrun -m extract.jobs ...`): the `lxmert-extract` command line."""

import sys

from .cli import main

sys.exit(main())
