"""A driving benchmark in the manner of the CARLA leaderboard: routes, a driving score, a sweep.

`route` reads route files, `plan` lays them on the lane graph, `score` is the driving score
(pure functions), `episode` drives one model on one route, `suite` runs models x routes in
one process or on Ray, `table` writes the tables; ``python -m harness.drive`` is the CLI.
"""
