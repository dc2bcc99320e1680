"""The compose file's "cluster" profile: PostgreSQL, two API servers, two workers, all on one DATABASE_URL."""

from __future__ import annotations

from tests.test_deploy_files import _compose, _interpolated
from wazo_stt.config import Settings
from wazo_stt.host import at_once

CLUSTER = {"postgres", "api-1", "api-2", "worker-1", "worker-2"}


def test_the_cluster_profile_runs_api_servers_and_workers_on_one_postgresql() -> None:
    services = _interpolated(_compose())["services"]
    assert {name for name, s in services.items() if s.get("profiles") == ["cluster"]} == CLUSTER
    assert "profiles" not in services["wazo-stt"]  # `docker compose up -d` stays the single box
    urls = {services[name]["environment"]["DATABASE_URL"] for name in CLUSTER - {"postgres"}}
    assert len(urls) == 1
    [url] = urls
    pg = services["postgres"]["environment"]
    assert (
        url == f"postgresql+asyncpg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    )
    assert Settings(_env_file=None, database_url=url).database_url == url
    for api in ("api-1", "api-2"):
        assert services[api]["command"] == ["wazo-stt", "serve", "--workers", "0"] and services[api]["ports"]
    for worker in ("worker-1", "worker-2"):
        assert services[worker]["command"] == ["wazo-stt", "worker"] and "ports" not in services[worker]
        workers = Settings(_env_file=None, workers=services[worker]["environment"]["WORKERS"]).workers
        assert at_once(workers, cores=2) >= 1
    for name in CLUSTER - {"postgres"}:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/health" in " ".join(services[name]["healthcheck"]["test"])
