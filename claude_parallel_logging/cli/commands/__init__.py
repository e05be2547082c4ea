"""One module per ``cpl`` command, in the order ``cpl --help`` lists them.

Each module's docstring is the command's one-line help; ``add_arguments(parser)`` declares its
options and ``handle(args, out)`` runs it, returning the exit status.
"""
