"""One module per ``skedit`` command family; each exposes ``register(subparsers)``."""
