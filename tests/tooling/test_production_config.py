"""The production configuration of Feast, against the test run's private servers: the SQL
registry on PostgreSQL and the online store on Redis (database 10), as docker-compose.yml
configures them. (Airflow on Postgres: tests/e2e/test_ui_backfill.py; MLflow
on Postgres: tests/training.)"""

from __future__ import annotations

import pytest

from jobs.features import materialize, store
from tests.feature_lake import DAYS

DATABASE = "nightjar_feast_test"
REDIS_DB = 10


@pytest.fixture()
def production(feast_lake, postgres, redis_server):
    lake, _ = feast_lake
    postgres.create_database(DATABASE)
    client = redis_server.client(REDIS_DB)
    client.flushdb()
    yield (
        lake.model_copy(
            update={
                "feast_registry": postgres.url(DATABASE),
                "feast_online_store": "redis",
                "feast_redis": redis_server.connection_string(REDIS_DB),
            }
        ),
        client,
        postgres,
    )
    client.flushdb()


def test_feast_with_the_sql_registry_on_postgres_and_redis_online(production):
    settings, client, postgres = production
    store.apply(settings)  # the real `feast apply`, registry tables created in Postgres
    materialize.run(settings, DAYS[3])
    fs = store.feature_store(settings)
    assert store.FEATURE_SERVICE in {s.name for s in fs.list_feature_services()}
    assert materialize.newest_materialized_day(fs) == DAYS[3]
    online = fs.get_online_features(
        features=["carrier_stats:flights_1d"], entity_rows=[{"carrier": "UA"}]
    ).to_dict()
    assert online["flights_1d"][0] > 0 and client.dbsize() > 0
    conn = postgres.connect(DATABASE)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM feature_views WHERE project_id = 'nightjar'")
        (views,) = cursor.fetchone()
    conn.close()
    assert views == len(fs.list_feature_views())
