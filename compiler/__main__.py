"""`python -m bnnc ...` is the `bnnc` command."""
import sys

from .cli import main

sys.exit(main())
