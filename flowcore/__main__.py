"""``python -m flowcore``: the ``flowcore`` command."""

from flowcore._cli import main

raise SystemExit(main())
