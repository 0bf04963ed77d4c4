"""The chain of root versions, kept in the keys directory and shipped to every store.

Devices trust the root they were provisioned with and walk ``N+1.root.json``,
``N+2.root.json``, ... from the store (TUF spec 5.3), each version signed by a threshold
of the keys of the one before it and of itself. So a store must hold the whole chain from
version 1, and the keys directory, where rotations happen, is where the chain lives::

    ota-keys/1.root.json, 2.root.json, ...   every root version (written by keygen and rotate)
    ota-keys/root.json                       the newest one (provision new devices with it)

    chain = local_chain(Path("ota-keys"))      # verified, oldest first; [] without root.json
    save_chain(Path("ota-keys"), chain)        # missing N.root.json files, then root.json

A keys directory from before versioned roots holds only ``root.json``: it is a chain of one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from detpipe.edge.keys import serialize
from detpipe.errors import InvalidInput
from detpipe.io import write_bytes

_VERSIONED = re.compile(r"^([1-9][0-9]*)\.root\.json$")


def versioned_root(keys_dir: Path, version: int) -> Path:
    """``DIR/<version>.root.json``."""
    return keys_dir / f"{version}.root.json"


def version_of(md: Metadata) -> int:
    """The version of root metadata."""
    return int(md.signed.version)


def link_problem(prev: Metadata, new: Metadata) -> str | None:
    """Why ``new`` may not follow ``prev`` in a root chain (None when it may).

    ``new`` must be the next version and be signed by a threshold of ``prev``'s root keys
    and of its own (TUF spec 5.3.4-5.3.5).
    """
    if new.signed.type != Root.type:
        return f"v{version_of(prev) + 1} is {new.signed.type} metadata, not root"
    if version_of(new) != version_of(prev) + 1:
        return f"v{version_of(new)} follows v{version_of(prev)} (expected v{version_of(prev) + 1})"
    for signer, what in ((prev, f"the keys of v{version_of(prev)}"), (new, "its own keys")):
        root = signer.signed
        assert isinstance(root, Root)
        try:
            root.verify_delegate(Root.type, new.signed_bytes, new.signatures)
        except UnsignedMetadataError:
            return f"v{version_of(new)} is not signed by {what}"
    return None


def _read(path: Path) -> Metadata:
    try:
        md = Metadata.from_file(str(path))
    except Exception as e:  # DeserializationError, OSError: a broken keys directory
        raise InvalidInput(f"{path}: not TUF root metadata ({e})") from None
    if md.signed.type != Root.type:
        raise InvalidInput(f"{path}: {md.signed.type} metadata, expected root")
    return md


def local_chain(keys_dir: Path) -> list[Metadata]:
    """The verified root chain of ``keys_dir``, oldest first, ending at ``root.json``.

    Versions below ``root.json``'s are taken from ``N.root.json`` as far back as they go
    without a gap; ``[]`` when there is no ``root.json`` (a keys directory with online keys
    only: the store's root is used).

    Raises:
        InvalidInput: a file is not root metadata, or a link does not verify.
    """
    newest_path = keys_dir / "root.json"
    if not newest_path.is_file():
        return []
    newest = _read(newest_path)
    chain = [newest]
    version = version_of(newest) - 1
    while version >= 1 and versioned_root(keys_dir, version).is_file():
        chain.insert(0, _read(versioned_root(keys_dir, version)))
        version -= 1
    same = versioned_root(keys_dir, version_of(newest))
    if same.is_file() and _read(same).signed != newest.signed:
        raise InvalidInput(f"{same} and {newest_path} are different root v{version_of(newest)}")
    for prev, new in pairwise(chain):
        problem = link_problem(prev, new)
        if problem is not None:
            raise InvalidInput(f"{keys_dir}: root chain broken: {problem}")
    return chain


def save_chain(keys_dir: Path, chain: Iterable[Metadata]) -> Path:
    """Write each version's ``N.root.json`` that is missing, then ``root.json`` (the newest).

    Returns:
        The path of ``root.json``.
    """
    chain = sorted(chain, key=version_of)
    for md in chain:
        path = versioned_root(keys_dir, version_of(md))
        if not path.is_file():
            write_bytes(path, serialize(md))
    return write_bytes(keys_dir / "root.json", serialize(chain[-1]))
