"""`python -m node_agent`: the systemd service entry point."""

from node_agent.agent import main

raise SystemExit(main())
