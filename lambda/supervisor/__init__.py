"""The run supervisor: a level-triggered controller of every run on the platform (README.md,
"The run supervisor"). ``decide`` is pure; ``observe`` reads AWS, ``act`` changes it."""
