"""``python -m refcam ...``: the same command line as the ``refcam`` console script (:mod:`refcam.cli`)."""
from .cli import main

raise SystemExit(main())
