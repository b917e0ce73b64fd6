"""``python -m layerhound``."""

import sys

from layerhound.cli import main

sys.exit(main())
