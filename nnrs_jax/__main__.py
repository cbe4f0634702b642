"""``python -m nnrs_jax`` runs the command line."""

import sys

from nnrs_jax.cli import main

sys.exit(main())
