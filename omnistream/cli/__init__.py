"""The `omnistream` command and what only it runs: the demo and the replay of recorded data."""
