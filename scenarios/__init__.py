"""Scenario files (TOML) and their loader: what to drive, where, in which weather."""

from scenarios.schema import Scenario, ScenarioError, list_scenarios, load_scenario

__all__ = ["Scenario", "ScenarioError", "list_scenarios", "load_scenario"]
