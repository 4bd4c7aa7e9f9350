"""``python -m keptn_gitops_service``."""

from keptn_gitops_service.cli import main

raise SystemExit(main())
