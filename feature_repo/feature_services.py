"""Feature services: the versioned feature sets models are trained and served with.

A model records the service it was trained on; a new feature set is a new service
(``flight_disruption_v3``), so a model in production keeps reading exactly the features it
was trained with: every service stays registered.
"""

import feature_views as fv
from feast import FeatureService

V1_VIEWS = [
    fv.flight_schedule,
    fv.carrier_stats,
    fv.origin_stats,
    fv.route_stats,
    fv.plane_stats,
    fv.origin_weather,
]

flight_disruption_v1 = FeatureService(
    name="flight_disruption_v1",
    features=V1_VIEWS,
    description="Features of the nightly disruption-risk model (departure delayed >= 15 min "
    "or cancelled), as of the evening before the flight",
    tags={"model": "disruption", "version": "1"},
)

V2_VIEWS = [*V1_VIEWS, fv.flight_timetable, fv.origin_weather_trend]

flight_disruption_v2 = FeatureService(
    name="flight_disruption_v2",
    features=V2_VIEWS,
    description="v1, what tomorrow's timetable and the calendar say about each flight "
    "(congestion at its origin, its plane's legs and turn, days to a holiday), and where the "
    "origin's weather was heading as the day before closed",
    tags={"model": "disruption", "version": "2"},
)

V3_VIEWS = [*V2_VIEWS, fv.flight_number_stats]

flight_disruption_v3 = FeatureService(
    name="flight_disruption_v3",
    features=V3_VIEWS,
    description="v2 and the flight number's own record: its trailing 1/7/28-day disruption "
    "statistics (carrier, number and origin, every day it flies)",
    tags={"model": "disruption", "version": "3"},
)

flight_disruption_v4 = FeatureService(
    name="flight_disruption_v4",
    features=[*V3_VIEWS, fv.flight_route],
    description="v3 and the flight's route itself (origin-destination), which the model splits "
    "on as a category",
    tags={"model": "disruption", "version": "4"},
)
