"""The model manager: readiness only after every model, routing by alias and version."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keel.errors import ModelNotFound
from keel.registry import Registry
from keel.serving.model_manager import ModelManager
from keel.settings import Settings

REFS = ["breast-cancer@production", "breast-cancer@candidate", "digits-mlp@production"]


def _manager(registry: Path, executor: ThreadPoolExecutor) -> ModelManager:
    settings = Settings(registry=str(registry))
    return ModelManager(Registry(registry), settings, executor)


def test_not_ready_until_every_model_named_at_start_is_ready(demo_registry: Path) -> None:
    async def scenario() -> None:
        with ThreadPoolExecutor(2) as executor:
            manager = _manager(demo_registry, executor)
            starting = asyncio.create_task(manager.start(REFS))
            seen_ready_early = False
            while not starting.done():
                seen_ready_early |= manager.ready
                await asyncio.sleep(0)
            await starting
            assert not seen_ready_early
            assert manager.ready
            await manager.close()

    asyncio.run(scenario())


def test_requests_route_by_alias_version_and_default(demo_registry: Path) -> None:
    registry = Registry(demo_registry)
    production = registry.resolve("breast-cancer@production").version.replace("/", "-")
    candidate = registry.resolve("breast-cancer@candidate").version.replace("/", "-")

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as executor:
            manager = _manager(demo_registry, executor)
            await manager.start(REFS)
            assert manager.find("breast-cancer").label == production
            assert manager.find("breast-cancer", "candidate").label == candidate
            assert manager.find("breast-cancer", candidate).label == candidate
            assert manager.find("breast-cancer", candidate[:-3]).label == candidate
            with pytest.raises(ModelNotFound, match="staging"):
                manager.find("breast-cancer", "staging")
            with pytest.raises(ModelNotFound, match="not served"):
                manager.find("iris")
            await manager.close()

    asyncio.run(scenario())
