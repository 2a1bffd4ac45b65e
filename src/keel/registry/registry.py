"""The model registry: ``{root}/{name}/{git_sha}/{timestamp}/`` with metadata.json last."""

from __future__ import annotations

import getpass
import shutil
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from keel.digest_memo import DigestMemo
from keel.errors import (
    AmbiguousVersion,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    RegistryError,
)
from keel.registry import version_ids
from keel.registry.aliases import ALIASES_FILE, AliasBook, AliasEvent
from keel.registry.files import check_file_name, copy_with_digest, stored_digest
from keel.registry.metadata import (
    METADATA_FILE,
    FileDigest,
    ModelMetadata,
    SourceInfo,
    VersionContent,
)
from keel.registry.names import LATEST, ModelRef, check_alias_name, check_model_name, parse_ref
from keel.registry.storage import Progress, Storage, sha256_file
from keel.shared_files import exclusive

STAGING = ".staging"
STALE_STAGING_SECONDS = 3600
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def default_actor() -> str:
    """Who is making a change, as ``user@host``, for the alias history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Registry:
    """Published model versions, their aliases and history, in a folder or an object store."""

    def __init__(
        self,
        url: str | Path,
        cache_dir: Path | None = None,
        digest_memo: DigestMemo | None = None,
    ) -> None:
        self.storage = Storage(str(url))
        self.url = str(url)
        self.cache_dir = cache_dir or Path.home() / ".cache" / "keel"
        # The server's notes of files hashed already (one worker of several hashes each).
        self.digest_memo = digest_memo

    # -- reading -----------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of the models that have at least one published version."""
        return [
            name
            for name in self.storage.list_dirs("")
            if not name.startswith(".") and self.versions(name)
        ]

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name`` as ``sha/timestamp``, oldest first.

        A folder without metadata.json is a publish that has not committed (or
        died): it is not a version and is never shown.
        """
        check_model_name(name)
        found = []
        for sha in self.storage.list_dirs(name):
            if sha.startswith("."):
                continue
            for stamp in self.storage.list_dirs(f"{name}/{sha}"):
                if self.storage.exists(f"{name}/{sha}/{stamp}/{METADATA_FILE}"):
                    found.append(f"{sha}/{stamp}")
        return sorted(found, key=lambda v: (v.split("/")[1], v))

    def metadata(self, name: str, version: str) -> ModelMetadata:
        """The metadata of one exact version."""
        check_model_name(name)
        try:
            raw = self.storage.read_bytes(f"{name}/{version}/{METADATA_FILE}")
        except FileNotFoundError:
            raise ModelNotFound(f"{name}@{version} is not in the registry {self.url}") from None
        try:
            meta = ModelMetadata.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(f"{name}@{version}: metadata.json is invalid: {exc}") from exc
        for file_name in meta.files:
            check_file_name(file_name)
        if meta.artifact.path not in meta.files:
            raise RegistryError(f"{name}@{version}: the artifact is not among the hashed files")
        if meta.name != name or meta.version != version:
            raise RegistryError(
                f"{name}@{version}: metadata.json claims to be {meta.name}@{meta.version}"
            )
        return meta

    def resolve(self, ref: str | ModelRef) -> ModelMetadata:
        """The metadata of the version a reference names (alias, latest, or version prefix)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        return self.metadata(parsed.name, self.resolve_version(parsed))

    def resolve_version(self, ref: ModelRef) -> str:
        """The full version (``sha/timestamp``) a reference names."""
        versions = self.versions(ref.name)
        if not versions:
            raise ModelNotFound(f"model {ref.name!r} has no published version in {self.url}")
        if ref.selector == LATEST:
            return versions[-1]
        if not ref.is_version:
            aliases = self.aliases(ref.name)
            if ref.selector not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise ModelNotFound(f"{ref}: no such alias (aliases of {ref.name}: {known})")
            return aliases[ref.selector]
        matches = [v for v in versions if version_ids.selects(v, ref.selector)]
        if not matches:
            raise ModelNotFound(
                f"{ref}: no version of {ref.name} matches; "
                f"`keel models versions {ref.name}` lists them with their short ids"
            )
        if len(matches) > 1:
            ids = version_ids.short_ids(versions)
            listed = ", ".join(f"{ids[v]} ({v})" for v in reversed(matches))
            raise AmbiguousVersion(
                f"{ref} matches {len(matches)} versions; name one by its short id: {listed}"
            )
        return matches[0]

    def short_ids(self, name: str) -> dict[str, str]:
        """The short id of every version of ``name`` (version -> id), oldest first.

        Short ids are unique within the model; see :mod:`keel.registry.version_ids`.
        """
        return version_ids.short_ids(self.versions(name))

    def aliases(self, name: str) -> dict[str, str]:
        """Current aliases of ``name``: alias -> version."""
        return dict(self._alias_book(name).aliases)

    def alias_history(self, name: str) -> list[AliasEvent]:
        """Every alias change of ``name``, oldest first."""
        return list(self._alias_book(name).history)

    def _alias_book(self, name: str) -> AliasBook:
        check_model_name(name)
        try:
            raw = self.storage.read_bytes(f"{name}/{ALIASES_FILE}")
        except FileNotFoundError:
            return AliasBook()
        return _parse_alias_book(name, raw)

    # -- writing -----------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        ref: str,
        *,
        by: str | None = None,
        reason: str = "",
    ) -> AliasEvent:
        """Point ``alias`` at the version ``ref`` names; recorded in the history.

        Refused (InvalidName) if another alias of the model differs from it only
        by case: ``Production`` beside ``production`` is a typo waiting to happen.
        """
        check_alias_name(alias)
        version = self.resolve_version(parse_ref(f"{name}@{ref}"))
        return self._change_alias(name, alias, version, by=by, reason=reason)

    def delete_alias(
        self, name: str, alias: str, *, by: str | None = None, reason: str = ""
    ) -> AliasEvent:
        """Remove ``alias``; the removal is recorded in the history (``version`` None).

        ModelNotFound, naming the aliases there are, if the model has no such alias.
        """
        check_alias_name(alias)
        if not self.versions(name):
            raise ModelNotFound(f"model {name!r} has no published version in {self.url}")
        return self._change_alias(name, alias, None, by=by, reason=reason)

    def _change_alias(
        self, name: str, alias: str, version: str | None, *, by: str | None, reason: str
    ) -> AliasEvent:
        made: list[AliasEvent] = []

        def move(raw: bytes | None) -> bytes:
            # Runs again if another writer changed the book first, so
            # ``previous`` always names what this change really replaced, and
            # the checks hold against the book as it is written.
            book = AliasBook() if raw is None else _parse_alias_book(name, raw)
            _check_alias_change(name, alias, version, book)
            event = AliasEvent(
                alias=alias,
                version=version,
                previous=book.aliases.get(alias),
                at=datetime.now(UTC),
                by=by or default_actor(),
                reason=reason,
            )
            book.apply(event)
            made.append(event)
            return book.model_dump_json(indent=2).encode()

        self.storage.update(f"{name}/{ALIASES_FILE}", move)
        return made[-1]

    def publish(
        self,
        name: str,
        files: Mapping[str, Path],
        content: VersionContent,
        source: SourceInfo,
        progress: Progress | None = None,
    ) -> ModelMetadata:
        """Store a new version atomically: it is either wholly visible or not at all."""
        check_model_name(name)
        for file_name in files:
            check_file_name(file_name)
        if content.artifact.path not in files:
            raise RegistryError(f"the artifact {content.artifact.path!r} is not among the files")
        stamp = datetime.now(UTC)
        pending = _PendingVersion(
            name=name,
            version=f"{source.git_sha}/{stamp.strftime(TIMESTAMP_FORMAT)}",
            created_at=stamp,
            files=files,
            content=content,
            source=source,
        )
        if self.storage.is_local:
            return self._publish_local(pending, progress)
        return self._publish_remote(pending, progress)

    def _publish_local(self, pending: _PendingVersion, progress: Progress | None) -> ModelMetadata:
        # Everything is written into a staging folder, then renamed into place in
        # one step: a publish killed at any point leaves no trace in the tree.
        self._clear_stale_staging()
        staging = self.storage.local_path(f"{STAGING}/{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            meta = pending.metadata(
                {
                    file_name: copy_with_digest(source_path, staging / file_name, progress)
                    for file_name, source_path in pending.files.items()
                }
            )
            (staging / METADATA_FILE).write_text(meta.model_dump_json(indent=2))
            target = self.storage.local_path(pending.prefix)
            if target.exists():
                raise RegistryError(f"{meta.ref} exists; published versions are immutable")
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return meta

    def _publish_remote(self, pending: _PendingVersion, progress: Progress | None) -> ModelMetadata:
        # Object stores have no rename: files go to their final keys first and
        # metadata.json, the commit marker, last. Readers ignore a version
        # folder without it, so a publish that dies half way is invisible.
        if self.storage.exists(f"{pending.prefix}/{METADATA_FILE}"):
            raise RegistryError(
                f"{pending.name}@{pending.version} exists; published versions are immutable"
            )
        digests = {}
        for file_name, source_path in pending.files.items():
            digest, size = sha256_file(source_path)
            self.storage.put_file(source_path, f"{pending.prefix}/{file_name}", progress)
            digests[file_name] = FileDigest(sha256=digest, size=size)
        meta = pending.metadata(digests)
        try:
            # Written only if absent (If-None-Match on S3): a version is immutable.
            self.storage.create_bytes(
                f"{pending.prefix}/{METADATA_FILE}", meta.model_dump_json(indent=2).encode()
            )
        except FileExistsError:
            raise RegistryError(f"{meta.ref} exists; published versions are immutable") from None
        return meta

    def _clear_stale_staging(self) -> None:
        staging_root = self.storage.local_path(STAGING)
        if not staging_root.is_dir():
            return
        cutoff = time.time() - STALE_STAGING_SECONDS
        for entry in staging_root.iterdir():
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)

    # -- integrity ---------------------------------------------------------------

    def fetch(self, meta: ModelMetadata, progress: Progress | None = None) -> Path:
        """A local folder holding the version's files, every hash verified.

        A local registry is verified in place; a remote one is copied into the
        cache first and verified there, so what is loaded is what was checked. A
        file that is a symbolic link (or reached through one), or not a regular
        file, is refused (UnsafeArtifact) before any of it is read.
        """
        prefix = f"{meta.name}/{meta.version}"
        if self.storage.is_local:
            folder = self.storage.local_path(prefix)
            # Nothing from the root down may be a link: the version's folders included.
            trusted = self.storage.local_path("")
        else:
            folder = trusted = self.cache_dir / "registry" / meta.name / meta.version
            folder.mkdir(parents=True, exist_ok=True)
            # Processes sharing the cache (a server's workers) download a version once:
            # the others wait here, then find its files.
            with exclusive(folder.with_name(f"{folder.name}.lock")):
                for file_name in meta.files:
                    target = folder / file_name
                    if not target.exists():
                        self.storage.get_file(f"{prefix}/{file_name}", target)
        for file_name, expected in meta.files.items():
            actual = stored_digest(folder / file_name, trusted, progress, self.digest_memo)
            if actual != expected:
                raise IntegrityError(_mismatch(meta, file_name, expected, actual))
        return folder


@dataclass(frozen=True)
class _PendingVersion:
    """A version being published: everything but the digests of its stored files."""

    name: str
    version: str
    created_at: datetime
    files: Mapping[str, Path]
    content: VersionContent
    source: SourceInfo

    @property
    def prefix(self) -> str:
        return f"{self.name}/{self.version}"

    def metadata(self, digests: Mapping[str, FileDigest]) -> ModelMetadata:
        return ModelMetadata(
            name=self.name,
            version=self.version,
            created_at=self.created_at,
            source=self.source,
            files=dict(digests),
            **self.content.model_dump(),
        )


def _check_alias_change(name: str, alias: str, version: str | None, book: AliasBook) -> None:
    """Refuse an alias that differs from another only by case, or removing one that is not."""
    twins = [a for a in book.aliases if a != alias and a.casefold() == alias.casefold()]
    if version is not None and twins:
        raise InvalidName(
            f"{name} already has the alias {twins[0]!r}, which differs from {alias!r} only by "
            f"case: use {twins[0]!r}"
        )
    if version is None and alias not in book.aliases:
        hint = f"; did you mean {twins[0]!r}?" if twins else ""
        known = ", ".join(sorted(book.aliases)) or "none"
        raise ModelNotFound(f"{name} has no alias {alias!r} (aliases: {known}){hint}")


def _parse_alias_book(name: str, raw: bytes) -> AliasBook:
    try:
        return AliasBook.model_validate_json(raw)
    except ValidationError as exc:
        raise RegistryError(f"{name}/{ALIASES_FILE} is invalid: {exc}") from exc


def _mismatch(
    meta: ModelMetadata, file_name: str, expected: FileDigest, actual: FileDigest | None
) -> str:
    if actual is None:
        return f"{meta.ref}: file {file_name} is missing"
    return (
        f"{meta.ref}: file {file_name} does not match its recorded hash "
        f"(sha256 {actual.sha256[:16]}..., {actual.size} bytes; "
        f"recorded {expected.sha256[:16]}..., {expected.size} bytes): it was altered or corrupted"
    )
