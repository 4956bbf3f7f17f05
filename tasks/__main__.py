"""`python -m tasks train|evaluate ...` (`torchrun --nproc-per-node N -m tasks train ...`): the `lxmert train` and
`lxmert evaluate` command lines."""

import sys

from .cli import main

sys.exit(main())
