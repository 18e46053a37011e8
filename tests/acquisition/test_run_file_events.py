"""How an SR result's flags become /events rows (acquisition.run_file.flag_events)."""

from __future__ import annotations

from acquisition import run_file


def test_auto_choices_are_sr_method_rows_and_problems_sr_flagged() -> None:
    flags = ["auto:wiener: photon count 84.2 e- above 60 e-", "saturated"]
    assert run_file.flag_events(1, flags) == [
        ("sr_method", "channel 1: auto:wiener: photon count 84.2 e- above 60 e-"),
        ("sr_flagged", "channel 1: saturated"),
    ]
    assert run_file.flag_events(0, ["auto:dfcan-sim: inside the training domain"]) == [
        ("sr_method", "channel 0: auto:dfcan-sim: inside the training domain")]
    assert run_file.flag_events(0, ["non_finite_output", "constant_input"]) == [
        ("sr_flagged", "channel 0: non_finite_output, constant_input")]
    assert run_file.flag_events(2, []) == []
