"""What can be checked about a fleet without any host: `vmfleet validate` runs it all, and
`plan` and `up` before they touch a host.

Beyond what loading checks: the files the fleet names (see `spec.files`: they exist, stay in
the fleet's folder or a trusted path, a secret is never user-data), `{env: NAME}` secrets are
set, and each VM's user-data renders (its Jinja2 template with every variable defined) into
valid cloud-config. SpecError lists every problem, at its position in the fleet file or the
template.
"""

from __future__ import annotations

from vmfleet.core.expand import Instance, expand, user_data_variables
from vmfleet.drivers import cloudinit
from vmfleet.errors import Problem, SpecError
from vmfleet.spec import files
from vmfleet.spec.load import LoadedFleet
from vmfleet.spec.source import Path


def offline(
    loaded: LoadedFleet, instances: list[Instance] | None = None, *, images: bool = True
) -> None:
    """Raise SpecError with every problem found without a host; return when there is none.

    `images=False` leaves image files out (`up`'s preflight checks them, content included).
    """
    problems = files.problems(loaded.spec, loaded.document, images=images)
    if not problems:
        for instance in (
            instances if instances is not None else expand(loaded.spec, fleet=loaded.name)
        ):
            problems += _user_data(loaded, instance)
            if len(problems) >= 20:  # one broken template breaks every VM: enough to act on
                break
    if problems:
        raise SpecError(_unique(problems))


def _user_data(loaded: LoadedFleet, instance: Instance) -> list[Problem]:
    """The VM's user-data as `up` renders it (less the keys only a host run makes)."""
    ci = instance.fields.cloud_init
    template = None
    source = None
    if ci.user_data is not None:
        base = files.base_of(loaded.document)
        path = files.resolve(ci.user_data, base=base)
        source = str(path)
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            where: Path = ("vms", instance.template, "cloud_init", "user_data")
            return [loaded.document.problem(where, f"cannot read {path}: {error}")]
    try:
        request = cloudinit.SeedRequest(
            instance_id=instance.name,
            hostname=instance.hostname,
            user=ci.user or loaded.spec.ssh.user,
            packages=tuple(ci.packages or ()),
            apt_proxy=ci.apt_proxy,
            write_files=tuple(
                cloudinit.WriteFile(
                    path=f.path, content=f.content, permissions=f.permissions, owner=f.owner
                )
                for f in ci.write_files or ()
            ),
            runcmd=tuple(c if isinstance(c, str) else tuple(c) for c in ci.runcmd or ()),
            user_template=template,
            user_template_source=source,
            template_mode=ci.user_data_mode or "merge",
            template_vars=user_data_variables(instance, fleet=loaded.name),
        )
        cloudinit.render_user_data(request)
    except SpecError as error:
        return [
            Problem(p.position, p.field, f"vm {instance.name}: {p.message}") for p in error.problems
        ]
    except ValueError as error:
        where = ("vms", instance.template, "cloud_init")
        return [loaded.document.problem(where, f"vm {instance.name}: {error}")]
    return []


def _unique(problems: list[Problem]) -> list[Problem]:
    """Problems in order, each message once (replicas of one template fail alike)."""
    seen: set[tuple[object, str]] = set()
    out: list[Problem] = []
    for problem in problems:
        key = (problem.position, problem.message.split(": ", 1)[-1])
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out
