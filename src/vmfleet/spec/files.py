"""Files a fleet file names: where they resolve, and whether they may be read at all.

A user-data template or a `{file: ...}` secret is read and sent into a guest, so a fleet
file from someone else must not be able to name `../../etc/shadow`. Such references resolve
relative to the fleet file's folder and, once symlinks are resolved, must stay inside it or
inside a folder listed under the top-level `trusted_paths`. Images and kernels are not
confined (base images usually live in a shared folder): they only have to exist.

`problems` checks every reference with the filesystem (existence, confinement, a secret
never used as user-data) and the environment (`{env: NAME}` is set); nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path as FsPath

from vmfleet.errors import Problem
from vmfleet.spec.models import CloudInit, FleetSpec, Secret
from vmfleet.spec.source import Document, Path


class OutsideError(ValueError):
    """A confined reference resolves outside the fleet's folder and every trusted path."""


def base_of(doc: Document) -> FsPath:
    """The folder references resolve against: the fleet file's, symlinks resolved."""
    return FsPath(doc.file).resolve().parent


def trusted(spec: FleetSpec, base: FsPath) -> list[FsPath]:
    """The folders a confined reference may point into: the fleet's and `trusted_paths`."""
    return [base, *(resolve(entry, base=base) for entry in spec.trusted_paths)]


def resolve(reference: str, *, base: FsPath) -> FsPath:
    """An absolute, symlink-free path for `reference` (`~` expanded, relative to `base`)."""
    path = FsPath(reference).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def confined(reference: str, *, base: FsPath, allowed: Sequence[FsPath]) -> FsPath:
    """`reference` resolved, when it lies inside one of `allowed`; else OutsideError."""
    path = resolve(reference, base=base)
    if not any(path.is_relative_to(folder) for folder in allowed):
        raise OutsideError(
            f"{reference!r} resolves to {path}, outside the fleet file's folder {base}; "
            "list its folder under trusted_paths to allow it"
        )
    return path


def cloud_inits(spec: FleetSpec) -> Iterator[tuple[Path, CloudInit]]:
    """Every `cloud_init` block in the file with its path: defaults, profiles, templates and
    their overrides."""
    layers: list[tuple[Path, object]] = [(("defaults",), spec.defaults)]
    layers += [(("profiles", name), profile) for name, profile in spec.profiles.items()]
    for name, template in spec.vms.items():
        layers.append((("vms", name), template))
        layers += [(("vms", name, "overrides", i), o) for i, o in template.overrides.items()]
    for path, layer in layers:
        block = getattr(layer, "cloud_init", None)
        if block is not None:
            yield (*path, "cloud_init"), block


def problems(spec: FleetSpec, doc: Document, *, images: bool = True) -> list[Problem]:
    """Every file or environment reference that cannot be used, at its position (local image
    files only with `images`)."""
    base = base_of(doc)
    allowed = trusted(spec, base)
    found: list[Problem] = []
    secrets: set[FsPath] = set()
    if spec.ssh.private_key:
        secrets.add(resolve(spec.ssh.private_key, base=base))
    templates: list[tuple[Path, FsPath]] = []
    for path, block in cloud_inits(spec):
        if isinstance(block.password, Secret):
            where: Path = (*path, "password")
            message, file = _secret(block.password, base=base, allowed=allowed)
            if message:
                found.append(doc.problem(where, message))
            if file is not None:
                secrets.add(file)
        if block.user_data is not None:
            where = (*path, "user_data")
            try:
                file = confined(block.user_data, base=base, allowed=allowed)
            except OutsideError as error:
                found.append(doc.problem(where, str(error)))
                continue
            if not file.is_file():
                found.append(doc.problem(where, f"user-data template {file} does not exist"))
            else:
                templates.append((where, file))
    for where, file in templates:
        if file in secrets:
            found.append(
                doc.problem(
                    where,
                    f"{file} is a secret (a password or key file); it is never sent as user-data",
                )
            )
    for name, image in spec.images.items() if images else ():
        if not image.source.startswith(("http://", "https://")):
            file = resolve(image.source, base=base)
            if not file.is_file():
                found.append(
                    doc.problem(("images", name, "source"), f"image file {file} does not exist")
                )
    return found


def _secret(
    secret: Secret, *, base: FsPath, allowed: Sequence[FsPath]
) -> tuple[str | None, FsPath | None]:
    """(why the secret cannot be read or None, its file if it names one)."""
    if secret.env is not None:
        if secret.env not in os.environ:
            return f"environment variable {secret.env} is not set", None
        return None, None
    assert secret.file is not None
    try:
        file = confined(secret.file, base=base, allowed=allowed)
    except OutsideError as error:
        return str(error), None
    if not file.is_file():
        return f"secret file {file} does not exist", file
    if not os.access(file, os.R_OK):
        return f"secret file {file} cannot be read", file
    return None, file
