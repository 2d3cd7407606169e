"""`unde ximilar sync` against the fake Ximilar, from a real staging database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.ximilar_server import COLLECTION_ID, TOKEN, FakeXimilar
from tests.gateway.conftest import jpeg, make_client
from tests.gateway.gateway_app import b64
from unde.cli import main as cli_main
from unde.providers.ximilar.sync import choose_photos, sync_collection
from unde.synthetic.image_server import ImageServer


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[ImageServer]:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        (images / f"{index}.jpg").write_bytes(jpeg((60 * index, 90, 120)))
    with ImageServer(tmp_path) as server:
        yield server


def add_products(staging_url: str, base_url: str, brand: str, skus: list[str]) -> None:
    urls = [f"{base_url}/{i}.jpg" for i in range(3)]
    with psycopg.connect(staging_url, autocommit=True) as conn:
        for sku in skus:
            conn.execute(
                "INSERT INTO raw_products (brand, external_id, name, price, category, product_type,"
                " colour, image_urls, image_kinds) VALUES (%s, %s, %s, 129.50, 'top', 'shirt',"
                " 'navy', %s, %s)",
                (brand, sku, f"{brand} {sku}", json.dumps(urls),
                 json.dumps(["flat", "on_model", "detail"])))


def test_choose_photos_prefers_on_model_and_flat() -> None:
    assert choose_photos(["a", "b", "c"], ["detail", "flat", "on_model"]) == [(2, "c"), (1, "b")]
    assert choose_photos(["a", "b", "c"], []) == [(0, "a"), (1, "b")]
    assert choose_photos(["a"], ["on_model"]) == [(0, "a")]


async def test_sync_is_idempotent_and_removes_departed_skus(
        staging_url: str, image_server: ImageServer, fake_ximilar: FakeXimilar) -> None:
    add_products(staging_url, image_server.base_url, "acme", [f"A{i:02d}" for i in range(7)])
    add_products(staging_url, image_server.base_url, "zeta", ["Z1"])  # not a pilot brand
    async with httpx.AsyncClient() as http, \
            await psycopg.AsyncConnection.connect(staging_url, autocommit=True) as conn:
        client = make_client(fake_ximilar, http)
        await client.insert([{"_id": "gone/X/0", "_base64": b64(jpeg((1, 2, 3))),
                              "brand": "gone", "external_id": "X"}])

        first = await sync_collection(client, conn, ["acme"])
        assert (first.skus, first.wanted, first.inserted, first.deleted) == (7, 14, 14, 1)
        assert fake_ximilar.collection_ids() == {f"acme/A{i:02d}/{r}" for i in range(7)
                                                 for r in (0, 1)}
        inserts = fake_ximilar.requests("/insert")[1:]
        assert [len(s.body["records"]) for s in inserts] == [10, 4]
        record = fake_ximilar.collection_fields("acme/A03/1")
        assert record["brand"] == "acme" and record["external_id"] == "A03"
        assert record["price"] == 129.5 and record["image_rank"] == 1
        assert record["image_kinds"] == ["flat", "on_model", "detail"]

        second = await sync_collection(client, conn, ["acme"])
        assert (second.present, second.inserted, second.deleted) == (14, 0, 0)
        assert len(fake_ximilar.requests("/insert")) == 3  # nothing sent again

        await conn.execute("DELETE FROM raw_products WHERE external_id = 'A05'")
        third = await sync_collection(client, conn, ["acme"])
        assert (third.inserted, third.deleted) == (0, 2)
        assert "acme/A05/0" not in fake_ximilar.collection_ids()


async def test_sync_falls_back_to_idempotent_inserts_when_listing_fails(
        staging_url: str, image_server: ImageServer, fake_ximilar: FakeXimilar) -> None:
    add_products(staging_url, image_server.base_url, "acme", [f"A{i:02d}" for i in range(3)])
    async with httpx.AsyncClient() as http, \
            await psycopg.AsyncConnection.connect(staging_url, autocommit=True) as conn:
        client = make_client(fake_ximilar, http)
        await sync_collection(client, conn, ["acme"])
        before = {rid: fake_ximilar.collection_fields(rid) for rid in fake_ximilar.collection_ids()}
        fake_ximilar.fail_next("503", times=10, path="/allIDs")

        report = await sync_collection(client, conn, ["acme"])
    assert report.listed is False and not report.failed
    assert (report.wanted, report.inserted, report.deleted) == (6, 6, 0)
    assert "listing failed" in report.summary()
    after = {rid: fake_ximilar.collection_fields(rid) for rid in fake_ximilar.collection_ids()}
    assert after == before  # re-inserting under the same _id replaced, never duplicated


def test_cli_sync(monkeypatch: pytest.MonkeyPatch, staging_url: str, production_url: str,
                  image_server: ImageServer, fake_ximilar: FakeXimilar,
                  capsys: pytest.CaptureFixture[str]) -> None:
    add_products(staging_url, image_server.base_url, "acme", ["A1", "A2"])
    for key, value in {"UNDE_SECRETS_DIR": "/nonexistent", "STAGING_DB_URL": staging_url,
                       "PRODUCTION_DB_URL": production_url, "XIMILAR_API_URL": fake_ximilar.base_url,
                       "XIMILAR_API_TOKEN": TOKEN, "XIMILAR_COLLECTION_ID": COLLECTION_ID,
                       "XIMILAR_PILOT_BRANDS": "acme"}.items():
        monkeypatch.setenv(key, value)
    assert cli_main(["ximilar", "sync", "--dry-run"]) == 0
    assert "4 inserted" in capsys.readouterr().out and fake_ximilar.collection_ids() == set()
    assert cli_main(["ximilar", "sync"]) == 0
    assert len(fake_ximilar.collection_ids()) == 4
    monkeypatch.setenv("XIMILAR_PILOT_BRANDS", "")
    assert cli_main(["ximilar", "sync"]) == 2  # configuration error
