"""NoCloud seed ISO: the small CD-ROM cloud-init reads its documents from on first boot.

cloud-init's NoCloud datasource finds a filesystem labelled `cidata` and reads the files
`user-data`, `meta-data` and, when present, `network-config` and `vendor-data` by those
exact names. The image carries them as ISO 9660 (8.3-safe names) with Joliet and Rock Ridge
names, so any mount sees the real names.

The ISO is built in memory with pycdlib; its bytes differ between builds (pycdlib stamps
the creation time), so compare seeds by their documents, not their bytes.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

VOLUME_IDENT = "cidata"

# (ISO 9660 name, Joliet and Rock Ridge name) of each document, in the order written.
_NAMES = {
    "user-data": "/USER_DATA.;1",
    "meta-data": "/META_DATA.;1",
    "network-config": "/NETWORK_CONFIG.;1",
    "vendor-data": "/VENDOR_DATA.;1",
}


def build_seed_iso(
    *,
    user_data: str,
    meta_data: str,
    network_config: str | None,
    vendor_data: str | None = None,
) -> bytes:
    """The seed ISO holding the given documents (UTF-8), labelled `cidata`.

    `network_config` or `vendor_data` None leaves that file out (cloud-init then falls
    back to DHCP on the first NIC, or no vendor data); an empty string writes an empty file.
    """
    documents = {
        "user-data": user_data,
        "meta-data": meta_data,
        "network-config": network_config,
        "vendor-data": vendor_data,
    }
    import pycdlib  # here, not at the top: only building a seed needs it

    iso = pycdlib.PyCdlib()
    # Interchange level 3 allows the ISO 9660 names above; Joliet level 3 and Rock Ridge
    # carry the exact lowercase names cloud-init opens.
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_IDENT)
    try:
        for name, text in documents.items():
            if text is None:
                continue
            data = text.encode("utf-8")
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                _NAMES[name],
                rr_name=name,
                joliet_path=f"/{name}",
            )
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    return out.getvalue()


def write_seed_iso(
    path: str | os.PathLike[str],
    *,
    user_data: str,
    meta_data: str,
    network_config: str | None,
    vendor_data: str | None = None,
) -> Path:
    """Build the seed ISO and write it to `path` atomically; return the path.

    The file appears whole or not at all (a temporary file in the same directory, fsynced,
    then renamed over `path`). It is created mode 0600: user-data may carry a password hash
    and SSH host keys (libvirt's dynamic ownership hands it to QEMU when the domain starts).
    OSError from the filesystem propagates; the temporary file is removed on failure.
    """
    target = Path(path)
    data = build_seed_iso(
        user_data=user_data,
        meta_data=meta_data,
        network_config=network_config,
        vendor_data=vendor_data,
    )
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
