"""``python -m napari_microseg`` runs the ``microseg`` command line."""

import sys

from .cli import main

sys.exit(main())
