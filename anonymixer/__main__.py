"""`python -m anonymixer`: the same as `anonymixer`."""

import sys

from .cli import main

sys.exit(main())
