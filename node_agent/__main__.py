"""`python -m node_agent`: the systemd service entry point (also the local drill's, with MINIO_COMMAND set)."""

from node_agent.agent import main

raise SystemExit(main())
