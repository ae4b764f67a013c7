"""The demo page's routes, and its scripts parse as JS modules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from starlette.applications import Starlette

from examples.issue_tracker import DEMO_SECRET, apply_schema, seed
from examples.web.routes import WEB_DIR, web_routes


async def test_page_assets_and_demo_users(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)
        seed(conn, issues=100)
    app = Starlette(routes=web_routes(database_url, users=3))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert 'src="/web/app.js"' in page.text
        script = await client.get("/web/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/web/routes.py")).status_code == 404
        assert (await client.get("/web/..%2Froutes.py")).status_code == 404
        users = (await client.get("/demo/users")).json()
    assert len(users) == 3
    for user in users:
        claims = jwt.decode(user["token"], DEMO_SECRET, algorithms=["HS256"])
        assert user["team_ids"] != [] and "team_ids" not in claims  # the policies read them
        assert claims["sub"] == str(user["id"])


@pytest.mark.parametrize("script", sorted(p.name for p in WEB_DIR.glob("*.js")))
def test_scripts_are_valid_modules(script: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to check the page's scripts")
    source = Path(WEB_DIR / script).read_text(encoding="utf-8")
    subprocess.run(
        [node, "--input-type=module", "--check"], input=source, text=True, check=True
    )
