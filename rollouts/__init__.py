"""DeepRacer Rollouts: the pure-Python domain (experiment spec, simapp contract, rendering,
metrics, operator CLI). Nothing here imports the CDK, so the CLI and the tests run without it."""

__version__ = "0.1.0"
