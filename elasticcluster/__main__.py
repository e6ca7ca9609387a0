"""``python -m elasticcluster``: the same as the ``elasticcluster`` command."""
from elasticcluster.cli import main

raise SystemExit(main())
