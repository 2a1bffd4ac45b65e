"""Which model versions the server holds, how requests find them, and how they are swapped.

Routing state is a plain dict per model (alias -> version) replaced whole on
every change, so a request reads either the old mapping or the new one, never
a half-updated one, without taking a lock on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from keel.errors import AmbiguousVersion, KeelError, ModelNotFound, NotReady, RegistryError
from keel.registry import ModelMetadata, ModelRef, Registry, parse_ref, selects
from keel.registry.names import DEFAULT_ALIAS, LATEST
from keel.serving.arrivals import Arrivals
from keel.serving.served_version import (
    ServedVersion,
    retire_version,
    start_version,
    version_label,
)
from keel.settings import Settings

log = logging.getLogger("keel.serving")


@dataclass(frozen=True)
class Routes:
    """One model's routing table: its versions by label, aliases to labels, the default."""

    versions: dict[str, ServedVersion]
    aliases: dict[str, str]
    default: str

    def find(self, selector: str | None) -> ServedVersion | None:
        key = selector or self.default
        label = self.aliases.get(key)
        if label is None:
            label = version_label(key) if "/" in key else key
        exact = self.versions.get(label)
        if exact is not None:
            return exact
        matches = [v for v in self.versions.values() if selects(v.metadata.version, key)]
        return matches[0] if len(matches) == 1 else None


# Batches reach the drift windows this often: late enough to observe many at once,
# soon enough that the queued tensors stay few. What waits is held in memory, and at
# saturation (breast-cancer, 32-row calls) folding every twentieth of a second, with
# keel.monitoring.monitor's row-capped pieces, served 4% more than every quarter second
# without them (33,254 vs 31,971 req/s, median of 5 alternating runs; the row cap
# alone measured no difference in the server).
MONITOR_INTERVAL_S = 0.05
# A model that cannot be resolved at start (a registry that cannot be read now) is
# tried again after these many seconds, doubling up to the last.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
# How long ``keel serve`` waits, before it listens, to learn whether the registry holds
# what it is told to serve; a registry slower to answer is left to the retrying start,
# so that liveness is not held back by an object store that is down.
HELD_CHECK_S = 10.0


def check_held(registry: Registry, refs: Iterable[str], timeout_s: float = HELD_CHECK_S) -> None:
    """Refuse (ModelNotFound) a reference that a registry which can be read does not hold.

    Retrying helps a registry that cannot be read now (a volume not mounted yet, an
    object store down): those are left to :meth:`ModelManager.start`. A registry
    that answers without the model, alias or version is a typo that no retry
    mends, so the message names what it does hold.
    """
    outcome: list[BaseException] = []

    def check() -> None:
        try:
            _check_held(registry, [parse_ref(r) for r in refs])
        except (ModelNotFound, AmbiguousVersion) as exc:
            outcome.append(exc)

    # A daemon thread: an object store's client may retry for minutes, and the
    # process must be free to exit (or serve) without waiting for it.
    thread = threading.Thread(target=check, name="keel-held-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.warning(
            "registry %s did not answer in %.0f s; serving starts and retries",
            registry.url,
            timeout_s,
        )
    if outcome:
        raise outcome[0]


def _check_held(registry: Registry, refs: list[ModelRef]) -> None:
    try:
        # Not there at all: a volume not mounted yet, a bucket prefix not written yet.
        if not registry.storage.exists(""):
            return
        for ref in refs:
            try:
                registry.resolve_version(ref)
            except (ModelNotFound, AmbiguousVersion) as exc:
                message = _not_held(registry, ref, exc)
                kind = AmbiguousVersion if isinstance(exc, AmbiguousVersion) else ModelNotFound
                raise kind(message) from None
    except (ModelNotFound, AmbiguousVersion):
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable now: ModelManager.start retries it
        log.warning("registry %s could not be read before start: %s", registry.url, exc)


def _not_held(registry: Registry, ref: ModelRef, exc: KeelError) -> str:
    """Why ``ref`` cannot be served, with what the registry holds: its models, or the aliases."""
    # Listed only now: on an object store a listing is a round trip every start would pay.
    held = registry.models()
    if ref.name not in held:
        shown = ", ".join(held) if held else "no model"
        return (
            f"cannot serve {ref}: the registry {registry.url} has no model '{ref.name}' "
            f"(it holds: {shown})"
        )
    if not ref.is_version and ref.selector != LATEST:
        known = ", ".join(sorted(registry.aliases(ref.name))) or "none"
        return (
            f"cannot serve {ref}: {ref.name} has no alias '{ref.selector}' (its aliases: "
            f"{known}; or name a version, or latest)"
        )
    # A version that matches none or several: the registry's own message says which.
    return f"cannot serve {exc}"


class ModelManager:
    """Loads, verifies, warms, routes to, hot-swaps and retires model versions."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        executor: Executor,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.executor = executor
        # The HTTP server's count of requests read but not started, for inline batches.
        self.arrivals = arrivals
        self.routes: dict[str, Routes] = {}
        self._watched: list[ModelRef] = []
        self._swap_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._retrier: asyncio.Task[None] | None = None
        # Named at start but not resolved yet: the server is not ready while any is left.
        self._pending: list[ModelRef] = []
        self._started = False

    # -- start and stop ----------------------------------------------------------

    async def start(self, refs: Iterable[str]) -> None:
        """Load every referenced version; they become ready one by one as they pass checks.

        A reference that cannot be resolved (the registry cannot be read now) does
        not stop the others: it is tried again in the background, with backoff, and
        the server is not ready until it loads. A reference that a readable registry
        does not hold is refused before the server starts (:func:`check_held`).
        """
        parsed = [parse_ref(r) for r in refs]
        self._pending = list(parsed)
        await self._load_pending()
        self._started = True
        self._feeder = asyncio.create_task(self._feed_monitors(), name="keel-drift-feeder")
        self._watched = [r for r in parsed if not r.is_version]
        if self.settings.server.watch_interval_s > 0 and self._watched:
            self._watcher = asyncio.create_task(self._watch(), name="keel-alias-watcher")
        if self._pending:
            self._retrier = asyncio.create_task(self._retry_pending(), name="keel-load-retry")

    async def _load_pending(self) -> None:
        # One at a time: loading is CPU-bound and the machine's cores are shared.
        for ref in list(self._pending):
            try:
                await self._serve(ref)
            except KeelError as exc:
                log.error("cannot serve %s yet: %s; retrying", ref, exc)
                continue
            self._pending.remove(ref)

    async def _retry_pending(self) -> None:
        delay = RETRY_FIRST_S
        while self._pending:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            await self._load_pending()
        log.info("every model named at start is now served")

    async def close(self) -> None:
        """Stop watching, then drain and free every version."""
        tasks = [
            t
            for t in (self._watcher, self._feeder, self._retrier, *self._background)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        grace = self.settings.server.grace_period_s
        await asyncio.gather(*(retire_version(v, grace) for v in self.versions()))

    async def _feed_monitors(self) -> None:
        """Move every version's recorded batches into its drift window, now and then."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            for version in self.versions():
                if version.monitor is not None:
                    await version.monitor.drain()

    # -- routing -----------------------------------------------------------------

    def find(self, name: str, selector: str | None = None) -> ServedVersion:
        """The version a request for ``name`` with this alias/version selector goes to."""
        routes = self.routes.get(name)
        version = None if routes is None else routes.find(selector)
        if version is not None:
            return version
        if any(ref.name == name and selector in (None, ref.selector) for ref in self._pending):
            # Named at start and still loading: it will be served, just not yet.
            raise NotReady(f"model '{name}' is still loading; retry shortly")
        if routes is None:
            raise ModelNotFound(f"model '{name}' is not served here (served: {self.names()})")
        known = sorted({*routes.aliases, *routes.versions})
        wanted = "default alias" if selector is None else f"version or alias '{selector}'"
        raise ModelNotFound(f"model '{name}' has no served {wanted} (served: {known})")

    def names(self) -> list[str]:
        return sorted(self.routes)

    def versions(self) -> list[ServedVersion]:
        """Every version served now, by model name, ready or not."""
        return [v for name in self.names() for v in self.routes[name].versions.values()]

    @property
    def ready(self) -> bool:
        """True once every model named at start-up was loaded and every default version is ready.

        Models load one after the other; until the last one has, the ones
        already loaded do not make the server ready.
        """
        defaults = [routes.find(None) for routes in self.routes.values()]
        return (
            self._started
            and not self._pending
            and bool(defaults)
            and all(v is not None and v.ready for v in defaults)
        )

    # -- loading and swapping ----------------------------------------------------

    async def _serve(self, ref: ModelRef) -> ServedVersion:
        """Serve ``ref`` at start-up: its alias routes to it even if it fails its checks,
        so requests and readiness say why it is not ready."""
        return await self.swap(ref, route_failed=True)

    async def swap(self, ref: ModelRef, route_failed: bool = False) -> ServedVersion:
        """Load the version ``ref`` names; route ``ref``'s alias to it once it is ready.

        A version that fails to load, verify or warm up stays listed (FAILED,
        with its reason, and is not retried) while the alias keeps answering
        with the old version. Swaps are serialised; requests never wait on them.
        """
        loop = asyncio.get_running_loop()
        async with self._swap_lock:
            metadata = await loop.run_in_executor(self.executor, self._resolve, ref)
            label = version_label(metadata.version)
            current = self.routes.get(ref.name)
            version = current.versions.get(label) if current else None
            if version is None:
                version = ServedVersion(metadata)
                self._add_version(ref, version)
                await start_version(
                    version, self.registry, self.settings, self.executor, self.arrivals
                )
            if ref.is_version or self.routes[ref.name].aliases.get(ref.selector) == label:
                return version
            if not version.ready and not route_failed:
                log.error(
                    "kept %s on its old version: %s is %s (%s)",
                    ref,
                    label,
                    version.state.value,
                    version.failure,
                )
                return version
            old_label = self._route_alias(ref, version)
            log.info("%s now answers with %s", ref, label)
            self._retire_if_unused(ref.name, old_label)
            return version

    def _resolve(self, ref: ModelRef) -> ModelMetadata:
        try:
            return self.registry.resolve(ref)
        except KeelError:
            raise
        except Exception as exc:
            # An object store's client raises its own errors (no credentials, no route,
            # a 5xx); to the server they all mean the registry cannot be read now.
            raise RegistryError(
                f"registry {self.registry.url} could not be read: {type(exc).__name__}: {exc}"
            ) from exc

    def _add_version(self, ref: ModelRef, version: ServedVersion) -> None:
        current = self.routes.get(ref.name)
        if current is None:
            default = version.label if ref.is_version else ref.selector
            self.routes[ref.name] = Routes({version.label: version}, {}, default)
            return
        versions = {**current.versions, version.label: version}
        default = DEFAULT_ALIAS if ref.selector == DEFAULT_ALIAS else current.default
        self.routes[ref.name] = Routes(versions, current.aliases, default)

    def _route_alias(self, ref: ModelRef, version: ServedVersion) -> str | None:
        current = self.routes[ref.name]
        old_label = current.aliases.get(ref.selector)
        aliases = {**current.aliases, ref.selector: version.label}
        version.aliases.add(ref.selector)
        if old_label is not None and old_label in current.versions:
            current.versions[old_label].aliases.discard(ref.selector)
        default = DEFAULT_ALIAS if ref.selector == DEFAULT_ALIAS else current.default
        self.routes[ref.name] = Routes(current.versions, aliases, default)
        return old_label

    def _retire_if_unused(self, name: str, label: str | None) -> None:
        routes = self.routes[name]
        if label is None or label in routes.aliases.values() or label == routes.default:
            return
        old = routes.versions.get(label)
        if old is None:
            return
        versions = {k: v for k, v in routes.versions.items() if k != label}
        self.routes[name] = Routes(versions, routes.aliases, routes.default)
        # Requests already holding the old version finish on it; it drains in
        # the background so the swap itself does not wait for them.
        task = asyncio.create_task(retire_version(old, self.settings.server.grace_period_s))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def unload(self, name: str) -> None:
        """Stop serving every version of ``name``."""
        async with self._swap_lock:
            routes = self.routes.pop(name, None)
        if routes is None:
            raise ModelNotFound(f"model '{name}' is not served here")
        self._watched = [r for r in self._watched if r.name != name]
        await asyncio.gather(
            *(
                retire_version(v, self.settings.server.grace_period_s)
                for v in routes.versions.values()
            )
        )

    async def load(self, ref: ModelRef) -> ServedVersion:
        """Serve ``ref`` (new model or new version of a served one) and watch its alias."""
        version = await self.swap(ref, route_failed=ref.name not in self.routes)
        if not ref.is_version and ref not in self._watched:
            self._watched.append(ref)
        return version

    async def _watch(self) -> None:
        """Poll the registry for alias moves and hot-swap to the new versions."""
        interval = self.settings.server.watch_interval_s
        while True:
            await asyncio.sleep(interval)
            for ref in list(self._watched):
                try:
                    await self.swap(ref)
                except KeelError as exc:
                    log.warning("could not check %s for a new version: %s", ref, exc)
