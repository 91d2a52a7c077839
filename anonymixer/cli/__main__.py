"""`python -m anonymixer.cli`: the same as `anonymixer`."""

import sys

from . import main

sys.exit(main())
