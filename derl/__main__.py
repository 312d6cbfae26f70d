"""`python -m derl ...` is `derl ...`: the form torchrun starts (`torchrun -m derl ppo ...`)."""

import sys

from derl.cli import main

sys.exit(main())
