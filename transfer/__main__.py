import sys

from .core.stopsig import catch_early

catch_early()  # before the imports: see transfer/core/stopsig.py

from .cli import main  # noqa: E402

sys.exit(main())
