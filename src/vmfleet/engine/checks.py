"""What can be checked about a fleet without any host: `vmfleet validate` runs it all, and
`plan` and `up` before they touch a host.

Beyond what loading checks: the files the fleet names (see `spec.files`: they exist, stay in
the fleet's folder or a trusted path, a secret is never user-data), `{env: NAME}` secrets are
set, and each VM's user-data renders (its Jinja2 template with every variable defined) into
valid cloud-config. SpecError lists every problem, at its position in the fleet file or the
template.
"""

from __future__ import annotations

from vmfleet.core.expand import Instance, expand
from vmfleet.drivers import cloudinit
from vmfleet.engine.provision import seed
from vmfleet.errors import FleetError, Problem, SpecError
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
        everyone = instances if instances is not None else expand(loaded.spec, fleet=loaded.name)
        for instance in everyone:
            problems += _user_data(loaded, instance, everyone)
            if len(problems) >= 20:  # one broken template breaks every VM: enough to act on
                break
    if problems:
        raise SpecError(_unique(problems))


def _user_data(loaded: LoadedFleet, instance: Instance, everyone: list[Instance]) -> list[Problem]:
    """The VM's user-data as `up` renders it (less what only a run makes: keys, NICs)."""
    try:
        request = seed.seed_request(loaded, instance, everyone)  # checks its own fields
        if request.user_template is not None:  # without one, ours is built from checked data
            cloudinit.render_user_data(request)
    except SpecError as error:
        return [
            Problem(p.position, p.field, f"vm {instance.name}: {p.message}") for p in error.problems
        ]
    except (FleetError, ValueError) as error:
        where: Path = ("vms", instance.template, "cloud_init")
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
