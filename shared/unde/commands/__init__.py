"""Sub-commands of the `unde` CLI."""
