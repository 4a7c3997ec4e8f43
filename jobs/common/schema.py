"""Compact schema declarations: ``struct("flight_id string", "flight_date date", ...)``.

Built from Python type objects (no JVM or Spark Connect round trip needed to parse DDL).
"""

from __future__ import annotations

from pyspark.sql import types as T

_TYPES = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
    "map<string,double>": T.MapType(T.StringType(), T.DoubleType()),
}


def struct(*columns: str) -> T.StructType:
    fields = []
    for column in columns:
        name, type_name = column.split()
        fields.append(T.StructField(name, _TYPES[type_name], nullable=True))
    return T.StructType(fields)


def strings(names: list[str]) -> list[str]:
    return [f"{n} string" for n in names]
