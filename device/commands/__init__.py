"""One module per CLI verb: ``configure(parser)`` adds its flags, ``run(args)`` returns an exit code."""
