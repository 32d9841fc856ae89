"""One module per group of `recycle` commands; recycle/cli.py imports only the one a command runs."""
