"""``python -m memlib STAGE --params FILE``: see :mod:`memlib.cli`."""

from .cli import main

raise SystemExit(main())
