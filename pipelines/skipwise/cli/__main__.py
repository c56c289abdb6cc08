"""`python -m skipwise.cli`: the `skipwise` command."""

from skipwise.cli.main import main

raise SystemExit(main())
