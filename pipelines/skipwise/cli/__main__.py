"""`python -m skipwise.cli`: the `skipwise` command."""

from skipwise.cli.entry import main

raise SystemExit(main())
