"""Importing this package registers every check with `service.rules.registry.CHECKS`."""

from service.rules.checks import (  # noqa: F401  (imported for registration)
    r0_red_flag_screen,
    r1_cauda_equina,
    r2_serious_pathology,
    r3_severe_motor_deficit,
    r4_progressive_deficit,
    r5_imaging_gate,
    r6_conservative_care,
    r7_failed_conservative_care,
    r8_failed_injection,
    r9_improvement,
)
