"""Drivers that steer on what a model sees: the lane estimator on a mask and the lane-keeping controller."""

from harness.drivers.ground import GroundProjector
from harness.drivers.lane_estimator import LaneEstimate, LaneEstimator, LaneEstimatorConfig
from harness.drivers.lane_keeper import ControllerConfig, LaneKeepingController, acc_accel

__all__ = [
    "ControllerConfig",
    "GroundProjector",
    "LaneEstimate",
    "LaneEstimator",
    "LaneEstimatorConfig",
    "LaneKeepingController",
    "acc_accel",
]
