"""One module per ``datp`` subcommand; each defines ``add_arguments(parser)`` and ``run(args)``."""
