"""The ``detpipe`` command line: one module per subcommand, assembled in :mod:`detpipe.cli.main`."""
