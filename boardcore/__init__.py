"""What every board process shares: the bus and its messages, the error tree, exit codes,
the spool, the settings. Imports nothing of the board's other packages."""
