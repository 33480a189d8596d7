"""The entry points: the `aqpl` command (cli.main) and the headless simulation (cli.simulate).

Nothing imports this package; it imports the rest.
"""
