"""The production configuration of Feast, against this machine's servers: the SQL registry on
PostgreSQL (127.0.0.1:5432) and the online store on Redis (127.0.0.1:6379, database 10), as
docker-compose.yml configures them. (Airflow on Postgres: tests/e2e/test_ui_backfill.py; MLflow
on Postgres: tests/training.)"""

from __future__ import annotations

import pytest

from jobs.features import materialize, store
from tests.feature_lake import DAYS

DATABASE = "nightjar_feast_test"
REDIS_DB = 10


@pytest.fixture()
def production(feast_lake):
    import psycopg2
    import redis

    lake, _ = feast_lake
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
        client.ping()
    except (psycopg2.OperationalError, redis.ConnectionError) as exc:
        pytest.fail(
            f"PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be up ({exc}); "
            "start them (`service postgresql start`, `service redis-server start`)"
        )
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()
    client.flushdb()
    yield (
        lake.model_copy(
            update={
                "feast_registry": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}",
                "feast_online_store": "redis",
                "feast_redis": f"127.0.0.1:6379,db={REDIS_DB}",
            }
        ),
        client,
    )
    client.flushdb()


def test_feast_with_the_sql_registry_on_postgres_and_redis_online(production):
    import psycopg2

    settings, client = production
    store.apply(settings)  # the real `feast apply`, registry tables created in Postgres
    materialize.run(settings, DAYS[3])
    fs = store.feature_store(settings)
    assert store.FEATURE_SERVICE in {s.name for s in fs.list_feature_services()}
    assert materialize.newest_materialized_day(fs) == DAYS[3]
    online = fs.get_online_features(
        features=["carrier_stats:flights_1d"], entity_rows=[{"carrier": "UA"}]
    ).to_dict()
    assert online["flights_1d"][0] > 0 and client.dbsize() > 0
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=DATABASE)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM feature_views WHERE project_id = 'nightjar'")
        (views,) = cursor.fetchone()
    conn.close()
    assert views == len(fs.list_feature_views())
