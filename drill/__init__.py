"""Local failover drill: the real checker and node agents against moto, in network namespaces, no AWS account.

`python -m drill` (or `make drill`). See drill/cli.py for the options and drill/inner.py for the run.
"""
