"""The entities the disruption model's features are keyed on."""

from feast import Entity, ValueType

flight = Entity(
    name="flight",
    join_keys=["flight_id"],
    value_type=ValueType.STRING,
    description="One scheduled departure: date, carrier, flight number, origin",
)
carrier = Entity(
    name="carrier",
    join_keys=["carrier"],
    value_type=ValueType.STRING,
    description="Two-letter airline code",
)
origin = Entity(
    name="origin",
    join_keys=["origin"],
    value_type=ValueType.STRING,
    description="Departure airport (FAA code: EWR, JFK, LGA)",
)
route = Entity(
    name="route",
    join_keys=["route"],
    value_type=ValueType.STRING,
    description="Origin-destination pair, e.g. JFK-LAX",
)
plane = Entity(
    name="plane",
    join_keys=["tailnum"],
    value_type=ValueType.STRING,
    description="Aircraft tail number",
)
flight_number = Entity(
    name="flight_number",
    join_keys=["flight_number"],
    value_type=ValueType.STRING,
    description="A flight number from its origin, every day it flies: carrier, number and "
    "origin, as a flight id reads without its date, e.g. UA-1545-EWR",
)
