"""`python -m refinery_py` is the same as the `refinery-py` command."""

from refinery_py.cli import main

raise SystemExit(main())
