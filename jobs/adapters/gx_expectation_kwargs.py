"""GX's expectation kwargs, read from one configuration instead of one per kwarg.

``Expectation.configuration`` is a property that serializes the whole pydantic model
(``self.dict()``) and builds a new ``ExpectationConfiguration`` on every access. GX 1.x's
``_get_domain_kwargs`` and ``_get_success_kwargs`` access it once per key inside a dict
comprehension, and the validator asks for them several times per expectation per metric: a
month's ``check_silver`` (62 validations, 806 expectations) accessed it 68,409 times, 16 s of the
gate's 21 s in GX's graph building. These methods read it once per call, with the same
values.

- Replaces: ``Expectation._get_domain_kwargs``, ``_get_success_kwargs`` and
  ``_get_runtime_kwargs`` (which calls ``_get_success_kwarg``, another read per key).
- Why: 16 of 21 s of a month's ``check_silver`` validation went to rebuilding the configuration
  (cProfile, ``nightjar stage check_silver --date 2013-03-01 --end 2013-04-01``).
- Written for: Great Expectations 1.24 (``great_expectations.expectations.expectation``).
- Back to stock: remove the :func:`install` call in ``jobs/quality/gx_runner.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from great_expectations.expectations.expectation import Expectation, parse_result_format

# GX's own methods, as imported (the tests and `make bench-quality` compare against them)
STOCK = {
    name: Expectation.__dict__[name]
    for name in ("_get_domain_kwargs", "_get_success_kwargs", "_get_runtime_kwargs")
}
_stock_in_use = False


def _configured(self: Expectation, configured: dict, keys) -> dict[str, Any]:
    return {key: configured.get(key, self._get_default_value(key)) for key in keys}


def _get_domain_kwargs(self: Expectation) -> dict[str, Any]:
    return _configured(self, self.configuration.kwargs, self.domain_keys)


def _success_kwargs(self: Expectation, configured: dict) -> dict[str, Any]:
    return {
        **_configured(self, configured, self.success_keys),
        **_configured(self, configured, self.domain_keys),
    }


def _get_success_kwargs(self: Expectation) -> dict[str, Any]:
    return _success_kwargs(self, self.configuration.kwargs)


def _get_runtime_kwargs(self: Expectation, runtime_configuration: dict | None = None) -> dict:
    runtime_configuration = runtime_configuration or {}
    configured = self.configuration.kwargs

    def success_kwarg(key: str) -> Any:  # stock: ``_get_success_kwarg(key)``
        if key in configured:
            return configured[key]
        field = self.__fields__.get(key)
        return None if field is None or field.required else field.default

    runtime = {key: runtime_configuration.get(key, success_kwarg(key)) for key in self.runtime_keys}
    runtime.update(_success_kwargs(self, configured))
    runtime["result_format"] = parse_result_format(runtime["result_format"])
    return runtime


def install() -> None:
    """Replace the three methods on GX's ``Expectation`` base class (idempotent; not inside
    :func:`stock`)."""
    if _stock_in_use:
        return
    Expectation._get_domain_kwargs = _get_domain_kwargs
    Expectation._get_success_kwargs = _get_success_kwargs
    Expectation._get_runtime_kwargs = _get_runtime_kwargs


@contextlib.contextmanager
def stock() -> Iterator[None]:
    """GX's own methods inside the block, whatever :func:`install` is called meanwhile."""
    global _stock_in_use
    _stock_in_use = True
    for name, method in STOCK.items():
        setattr(Expectation, name, method)
    try:
        yield
    finally:
        _stock_in_use = False
        install()
