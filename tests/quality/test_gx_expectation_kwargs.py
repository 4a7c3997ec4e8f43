"""GX's expectation kwargs read from one configuration (jobs/adapters/gx_expectation_kwargs.py)
give what GX's own methods give, for every expectation of every suite, and the same results."""

import datetime as dt

import great_expectations as gx
import pytest
from great_expectations.expectations.expectation import Expectation

from jobs.adapters import gx_expectation_kwargs
from jobs.quality import gx_runner

from .test_gx_runner import PARAMS, frame

SUITES = sorted(path.stem for path in gx_runner.SUITES_DIR.glob("*.json"))
METHODS = ("_get_domain_kwargs", "_get_success_kwargs", "_get_runtime_kwargs")


def expectations(suite_name: str) -> list[Expectation]:
    return list(gx.ExpectationSuite(**gx_runner.load_suite(suite_name)).expectations)


@pytest.mark.parametrize("suite_name", SUITES)
def test_every_expectation_gets_the_kwargs_gx_own_methods_give(suite_name):
    checked = 0
    for expectation in expectations(suite_name):
        for name in METHODS:
            stock = gx_expectation_kwargs.STOCK[name]
            ours = getattr(gx_expectation_kwargs, name)
            args = ({"result_format": "SUMMARY"},) if name == "_get_runtime_kwargs" else ()
            assert ours(expectation, *args) == stock(expectation, *args), (
                type(expectation).__name__,
                name,
            )
            checked += 1
    assert checked == 3 * len(gx_runner.load_suite(suite_name)["expectations"]) > 0


def test_a_validation_gives_the_same_results_with_gx_own_methods(settings, tmp_path):
    def results(run_id):
        outcome = gx_runner.validate(
            frame(dep_delay=[2.0, 2000.0, None]),
            "silver_flights",
            "silver",
            dt.date(2013, 1, 1),
            PARAMS,
            settings.model_copy(update={"state_dir": tmp_path / run_id}),
            run_id,
        )
        return [{k: v for k, v in row.items() if k != "_run_id"} for row in outcome.rows]

    ours = results("ours")
    assert Expectation._get_success_kwargs is gx_expectation_kwargs._get_success_kwargs
    with gx_expectation_kwargs.stock():
        stock = results("stock")
        assert Expectation._get_success_kwargs is gx_expectation_kwargs.STOCK["_get_success_kwargs"]
    assert Expectation._get_success_kwargs is gx_expectation_kwargs._get_success_kwargs
    assert ours == stock
    assert [r["expectation"] for r in ours if not r["success"]]  # a failure compared too
