"""MOLLI T1 and T2-prep fits, blood T2 oximetry, MVO2 and MEE."""
import numpy as np
import pytest

from analysis.oximetry import CALIBRATIONS, oxygen_consumption, saturation_from_t2
from analysis.relaxometry import fit_molli, fit_t2

RR_MS = 1000.0
SCHEMES = {  # inversion times (ms) of the Look-Locker sets, one image per heartbeat
    "5(3)3": [100 + k * RR_MS for k in range(5)] + [180 + k * RR_MS for k in range(3)],
    "4(1)3(1)2": [100 + k * RR_MS for k in range(4)] + [180 + k * RR_MS for k in range(3)]
                 + [260 + k * RR_MS for k in range(2)],
}


def molli_signal(ti, t1, a=1.0, b_over_a=1.9, noise=0.0, seed=0):
    """Standard MOLLI signal model with the readout's apparent T1* = T1 / (B/A - 1); magnitude."""
    t1 = np.atleast_1d(np.asarray(t1, float))[:, None]
    t1_star = t1 / (b_over_a - 1.0)
    signed = a - a * b_over_a * np.exp(-np.asarray(ti)[None] / t1_star)
    rng = np.random.default_rng(seed)
    return np.abs(signed + noise * rng.standard_normal(signed.shape))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_molli_noise_free_recovers_t1(scheme):
    t1 = np.array([300, 450, 800, 1000, 1200, 1550, 2000.0])
    fit = fit_molli(np.array(SCHEMES[scheme]), molli_signal(SCHEMES[scheme], t1))
    np.testing.assert_allclose(fit.t1_ms, t1, rtol=0.005)
    assert not fit.failed.any() and np.all(fit.residual < 1e-3)


@pytest.mark.parametrize("t1", [400.0, 1000.0, 1550.0])
def test_molli_with_noise_within_two_percent(t1):
    ti = np.array(SCHEMES["5(3)3"])
    fit = fit_molli(ti, molli_signal(ti, np.full(400, t1), noise=0.01, seed=int(t1)))
    assert abs(np.median(fit.t1_ms) / t1 - 1) < 0.02
    assert fit.failed.mean() < 0.01


def test_molli_flags_background():
    ti = np.array(SCHEMES["5(3)3"])
    noise = np.abs(np.random.default_rng(1).normal(0, 0.01, size=(50, ti.size)))
    assert fit_molli(ti, noise).failed.mean() > 0.9


@pytest.mark.parametrize("three, with_saturation", [(False, False), (True, False), (False, True)])
def test_t2_fit(three, with_saturation):
    te = np.array([0, 25, 50, 75, 100.0])
    t2 = np.array([35, 50, 100, 200.0])
    offset = 0.08 if (three or with_saturation) else 0.0
    signal = np.exp(-te[None] / t2[:, None]) + offset
    fit = fit_t2(te, signal, three_parameter=three, saturation=np.full(t2.size, offset) if with_saturation else None)
    np.testing.assert_allclose(fit.t2_ms, t2, rtol=0.005)
    if three:
        np.testing.assert_allclose(fit.offset, offset, atol=1e-3)


def test_calibration_round_trip_and_range():
    cal = CALIBRATIONS["lu2012_3T"]
    y = np.linspace(0.3, 0.99, 20)
    t2 = 1000.0 / cal.r2_per_s(y, 0.42)
    found, valid = saturation_from_t2(t2, 0.42, cal)
    np.testing.assert_allclose(found, y, atol=1e-9)
    assert valid.all()
    assert not saturation_from_t2(np.array([5000.0]), 0.42, cal)[1][0]   # longer than any blood T2


@pytest.mark.parametrize("hct", [0.35, 0.42, 0.50])
@pytest.mark.parametrize("so2", [0.40, 0.55, 0.70, 0.80])
def test_coronary_sinus_saturation_from_t2prep_phantom(so2, hct):
    """A T2-prep phantom: a 30-voxel coronary sinus ROI at known SO2, 2 % image noise, 3 T."""
    cal = CALIBRATIONS["lu2012_3T"]
    t2_true = 1000.0 / cal.r2_per_s(so2, hct)
    te = np.array([0, 20, 40, 60, 80.0])
    rng = np.random.default_rng(int(so2 * 100 + hct * 1000))
    roi = np.exp(-te[None] / t2_true) * (1 + 0.02 * rng.standard_normal((30, te.size)))
    t2 = fit_t2(te, roi.mean(axis=0, keepdims=True)).t2_ms   # fit the ROI-mean signal
    found, valid = saturation_from_t2(t2, hct, cal)
    assert valid[0] and abs(found[0] - so2) < 0.03


def test_mvo2_and_mee_match_hand_calculation():
    # MBF 1.0 mL/min/g, SaO2 0.98, SbO2 0.35, Hb 14 g/dL:
    # MVO2 = 1.0 x 0.63 x 0.14 g/mL x 1.36 = 0.119952 mL O2/min/g; LV 150 g -> 17.9928 mL O2/min.
    # Work: SV 70 mL x MAP 93 mmHg x 1.333e-4 J x HR 70 = 60.745 J/min;
    # MEE = 60.745 / (17.9928 x 20.1) = 16.80 %.
    r = oxygen_consumption(mbf_ml_per_min_per_g=1.0, sao2=0.98, sbo2=0.35, hb_g_per_dl=14.0,
                           stroke_volume_ml=70.0, mean_arterial_pressure_mmhg=93.0, heart_rate_per_min=70.0,
                           lv_mass_g=150.0)
    assert r.mvo2_ml_per_min_per_g == pytest.approx(0.119952)
    assert r.mvo2_ml_per_min == pytest.approx(17.9928)
    assert r.mee_percent == pytest.approx(16.80, abs=0.01)
    assert r.missing == []


def test_missing_inputs_are_named_not_invented():
    r = oxygen_consumption(sao2=0.98, sbo2=0.40, hb_g_per_dl=13.0, lv_mass_g=140.0)
    assert r.mvo2_ml_per_min_per_g is None and r.mee_percent is None
    assert set(r.missing) == {"mbf_ml_per_min_per_g", "stroke_volume_ml", "mean_arterial_pressure_mmhg",
                              "heart_rate_per_min"}
