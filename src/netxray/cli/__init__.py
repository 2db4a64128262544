"""The ``netxray`` command: one Typer app, one module per command group.

Each module in ``COMMAND_MODULES`` defines ``register(app: typer.Typer) -> None``. A module that
is missing (a lens not installed yet) is skipped, so the other commands keep working.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "netxray.cli.train_cmd",
    "netxray.cli.signature_cmd",
    "netxray.cli.modularity_cmd",
    "netxray.cli.weights_cmd",
    "netxray.cli.zoo_cmd",
    "netxray.cli.symmetry_cmd",
    "netxray.cli.scan_cmd",
    "netxray.cli.demo_cmd",
)

app = typer.Typer(
    name="netxray",
    help="An X-ray for trained neural networks: non-linearity, modularity, parameters, symmetry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Entry point of the ``netxray`` console script.

    Commands report bad input with one ``error:`` line; an operating-system error that slips
    through (a full disk, a path that cannot be written) gets the same treatment, not a traceback.
    """
    try:
        app()
    except OSError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise SystemExit(1) from None
