"""`vmfleet init`: a commented starter fleet file that validates as written."""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from vmfleet.cli.common import app
from vmfleet.cli.output import console
from vmfleet.errors import UsageError


class Example(StrEnum):
    three_tier = "three-tier"
    replicas = "replicas"
    ha = "ha"
    farm = "farm"


def starter(example: Example) -> str:
    """The text of one starter file."""
    return resources.files("vmfleet.cli").joinpath(f"starters/{example.value}.yaml").read_text()


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write it.", show_default=True)] = Path(
        "vmfleet.yaml"
    ),
    example: Annotated[
        Example, typer.Option("--example", "-e", help="Which starter.", case_sensitive=False)
    ] = Example.three_tier,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter fleet file (three-tier, replicas, ha or farm)."""
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    path.write_text(starter(example), encoding="utf-8")
    console.print(
        f"wrote {path} ({example.value}); next: vmfleet validate, vmfleet plan, vmfleet up"
    )
