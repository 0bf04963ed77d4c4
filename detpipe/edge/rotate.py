"""Key rotation: a new root version, signed by the old root key (and the new one), names the new key.

TUF spec 5.3: a device accepts root N+1 only when it is signed by a threshold of the keys
of root N *and* of root N+1, so a rotation is a chain devices walk on their next refresh;
a device provisioned with root v1 still trusts the repository after any number of rotations::

    rotate_key(store, Path("ota-keys"), "targets")   # needs root.pem: an offline ceremony

The new private key is written next to the old one first (``<role>.pem.new``), the new root
is published to the store and written to the keys directory (``N.root.json`` and
``root.json``, :mod:`detpipe.edge.rootchain`: the chain every other store gets on its next
publish), then the key replaces ``<role>.pem``; the retired key is kept as
``<role>.<keyid8>.retired.pem`` (delete it once no publish needs it). Provision new devices
with the new ``root.json``; devices holding an older one walk the chain.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from detpipe.edge.keys import ROLES, key_path, load_signer, write_private_key
from detpipe.edge.repository import StoreRepository
from detpipe.edge.rootchain import save_chain
from detpipe.errors import InvalidInput
from detpipe.store import Store

log = logging.getLogger(__name__)


def rotate_key(store: Store, keys_dir: Path, role: str, expires: timedelta = timedelta(days=7)) -> int:
    """Replace ``role``'s key; returns the new root version.

    Raises:
        InvalidInput: an unknown role, or the root key is not in ``keys_dir``.
    """
    if role not in ROLES:
        raise InvalidInput(f"role {role!r}: one of {', '.join(ROLES)}")
    old_root = load_signer(keys_dir, "root")  # a rotation is signed with the (offline) root key
    repo = StoreRepository(store, keys_dir, expires)
    new = CryptoSigner.generate_ed25519()
    pending = keys_dir / f"{role}.pem.new"
    write_private_key(pending, new)
    retired = [k for k in repo.root().roles[role].keyids]
    with repo.edit_root() as root:
        for keyid in retired:
            root.revoke_key(keyid, role)
        root.add_key(new.public_key, role)
        if role == "root":
            repo.signers["root"] = [new]
            repo.extra_root_signers = [old_root]  # root N+1 is signed by root N's key as well
    version = repo.root().version
    save_chain(keys_dir, repo.root_chain())  # before the key moves: the local root names it
    old_file = key_path(keys_dir, role)
    if old_file.exists() and retired:
        os.replace(old_file, keys_dir / f"{role}.{retired[0][:8]}.retired.pem")
    os.replace(pending, old_file)
    repo.signers[role] = [new]
    # re-sign the role with its new key, so devices see metadata the new root vouches for
    if role == "targets":
        with repo.edit_targets():
            pass
    if role in ("targets", "snapshot"):
        repo.do_snapshot(force=True)
    if role != "root":
        repo.do_timestamp(force=True)
    log.info("rotated the %s key: root v%d", role, version)
    return version
