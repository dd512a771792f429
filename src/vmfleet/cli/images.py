"""`vmfleet image pull|list|rm`: the base images in the download cache and on the hosts."""

from __future__ import annotations

from typing import Annotated

import typer

from vmfleet.cli import render
from vmfleet.cli.common import FleetFile, Output, StateOpt, app, open_fleet
from vmfleet.cli.output import OutputFormat, console, emit

image_app = typer.Typer(help="Base images: download, list, remove.", no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("pull")
def image_pull(
    file: FleetFile,
    names: Annotated[list[str] | None, typer.Argument(help="Only these images.")] = None,
    state: StateOpt = None,
    update: Annotated[
        bool, typer.Option(help="Take a catalog image's new 'latest' instead of the pinned one.")
    ] = False,
) -> None:
    """Download the fleet's URL images into the cache (resumable, sha256-verified); catalog
    images are checked against the publisher's checksum list and pinned; images with
    `prepare:` are then prepared (once per recipe, cached)."""
    with open_fleet(file, state) as fleet:
        fetched = fleet.image_pull(names or (), update=update)
    console.print(f"pulled: {', '.join(fetched)}" if fetched else "all images are present")


@image_app.command("list")
def image_list(
    file: FleetFile, output: Output = OutputFormat.table, state: StateOpt = None
) -> None:
    """Each image: source, local file, hosts holding its base volume, disks that depend on it."""
    with open_fleet(file, state) as fleet:
        rows = [render.plain(row) for row in fleet.image_list()]
    emit(
        rows,
        fmt=output,
        title="images",
        columns=[
            ("image", "Image"),
            ("source", "Source"),
            ("local", "Local file"),
            ("size", "Size"),
            ("prepare", "Prepare"),
            ("hosts", "On hosts"),
            ("dependants", "Used by"),
        ],
    )


@image_app.command("rm")
def image_rm(
    file: FleetFile,
    name: Annotated[str, typer.Argument(help="The image to remove.")],
    state: StateOpt = None,
) -> None:
    """Remove an image's base volumes and cached download; refused while disks depend on it."""
    with open_fleet(file, state) as fleet:
        removed = fleet.image_rm(name)
    for item in removed:
        console.print(f"removed {item}")
    if not removed:
        console.print(f"image {name}: nothing to remove")


@image_app.command("catalog")
def image_catalog(output: Output = OutputFormat.table) -> None:
    """Known cloud images: name, architecture, login user, URL and checksum list
    (use as `images: {NAME: {catalog: NAME}}`)."""
    from vmfleet.spec.catalog import IMAGES

    rows = [render.plain(image) for image in IMAGES]
    emit(
        rows,
        fmt=output,
        title="image catalog ($VMFLEET_CATALOG_MIRROR serves it from a mirror)",
        columns=[
            ("name", "Name"),
            ("arch", "Arch"),
            ("user", "User"),
            ("description", "Description"),
            ("url", "URL"),
            ("checksums", "Checksums"),
        ],
    )
