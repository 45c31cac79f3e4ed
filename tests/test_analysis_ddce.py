"""dDCE physics: 2CXM closed form, AIF fit, registration, relaxivity, and the phantom end to end (arrays)."""
from pathlib import Path

import numpy as np
import pytest

from analysis.ddce import analyse_slice, covered_windows, region_summary
from analysis.phantoms import Region
from analysis.phantoms.ddce import TRUE_PARAMETERS, blood_aif_mM, ddce_phantom, tissue_curve_numerical
from analysis.registration import align
from analysis.relaxivity import UnknownAgent, r1_per_mM_s
from analysis.tcxm import BiexpAif, fit_biexp_aif, tissue_concentration

TIMES = np.array([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 23, 26, 30], dtype=float)


@pytest.mark.parametrize("region", [Region.REMOTE, Region.INFARCT, Region.MVO])
def test_closed_form_2cxm_matches_ode_integration(region):
    aif = BiexpAif(a1=2.0, m1=0.8, a2=1.0, m2=0.03)
    p = TRUE_PARAMETERS[region]
    numerical = tissue_curve_numerical(TIMES, p["ve"], p["vp"], p["fp"], p["ps"], aif, dt=0.0005)
    analytic = tissue_concentration(TIMES, *(np.array([p[k]]) for k in ("fp", "ps", "vp", "ve")), aif)[0]
    np.testing.assert_allclose(analytic, numerical, rtol=5e-3)


def test_closed_form_handles_equal_rates():
    aif = BiexpAif(a1=1.0, m1=0.5, a2=0.0, m2=0.01)
    near = tissue_concentration(TIMES, np.array([0.5]), np.array([0.5]), np.array([0.1]), np.array([0.2]), aif)
    assert np.all(np.isfinite(near)) and np.all(near > 0)


def test_biexponential_aif_fit_recovers_parameters():
    truth = BiexpAif(a1=2.0, m1=0.6, a2=0.8, m2=0.02)
    fit = fit_biexp_aif(TIMES, truth(TIMES))
    assert fit.r_squared > 0.9999
    np.testing.assert_allclose([fit.a1, fit.m1, fit.a2, fit.m2], [2.0, 0.6, 0.8, 0.02], rtol=1e-3)
    with pytest.raises(ValueError):
        fit_biexp_aif(TIMES[:2], truth(TIMES[:2]))


def test_registration_recovers_breath_hold_shifts():
    p = ddce_phantom(motion_px=3.0, seed=4)
    _, shifts = align(p.t1_native_ms, p.t1_post_ms)
    np.testing.assert_allclose(shifts, -p.shifts_px[1:], atol=0.3)


def test_relaxivity_table():
    assert r1_per_mM_s("Gadovist 1.0", 1.5) == pytest.approx(5.2)
    assert r1_per_mM_s("GADOBUTROL", 3.0) == pytest.approx(5.0)
    assert r1_per_mM_s("Dotarem", 2.25) == pytest.approx(3.55)
    assert r1_per_mM_s("SiteAgent X", 1.5, overrides={"siteagent": 4.4}) == 4.4
    with pytest.raises(UnknownAgent):
        r1_per_mM_s("saline", 1.5)


def test_windows_are_covered_only_when_maps_reach_them():
    assert covered_windows(np.array([1, 2, 3, 4.6]), [5, 30]) == [5.0]     # within the 0.5 min jitter
    assert covered_windows(np.array([1, 2, 3, 4]), [5, 30]) == []
    assert covered_windows(TIMES, [5, 30]) == [5.0, 30.0]


@pytest.fixture(scope="module", params=[0.0, 3.0], ids=["still", "moving"])
def analysed(request):
    p = ddce_phantom(motion_px=request.param, noise_fraction=0.03)
    result = analyse_slice(p.t1_native_ms, p.t1_post_ms, p.times_min, hematocrit=p.hematocrit,
                           r1_per_mM_s=p.r1_per_mM_s, pixel_mm=p.pixel_mm)
    masks = {r.name.lower(): p.labels == r for r in (Region.REMOTE, Region.INFARCT, Region.MVO)}
    rows = {(row["window_min"], row["region"]): row for row in region_summary(result, masks)}
    return p, result, rows


def test_ddce_recovers_distribution_volumes(analysed, request):
    p, _, rows = analysed
    if "moving" in request.node.name:
        # the acceptance is stated without motion: after registration, interpolating a
        # 3-pixel-thick infarct mixes it with its neighbours; the large remote region stays exact
        assert abs(rows[(30.0, "remote")]["ve_plus_vp_median"] - 0.19) < 0.03
        assert abs(rows[(30.0, "infarct")]["ve_plus_vp_median"] - 0.66) < 0.10
        return
    for region in ("remote", "infarct"):      # README: within 0.025 (remote 0.010, infarct 0.021)
        truth = p.truth[region]["ve"] + p.truth[region]["vp"]
        assert abs(rows[(30.0, region)]["ve_plus_vp_median"] - truth) < 0.025, region
    assert abs(rows[(30.0, "infarct")]["ve_median"] - p.truth["infarct"]["ve"]) < 0.06


def test_five_minutes_agree_with_thirty(analysed):
    _, _, rows = analysed
    for region in ("remote", "infarct"):
        assert abs(rows[(5.0, region)]["ve_plus_vp_median"] - rows[(30.0, region)]["ve_plus_vp_median"]) < 0.02


def test_mvo_core_has_lower_plasma_flow_than_infarct(analysed):
    _, _, rows = analysed
    assert rows[(30.0, "mvo")]["fp_median"] < rows[(30.0, "infarct")]["fp_median"]


def test_maps_are_finite_and_flag_quality(analysed):
    p, result, _ = analysed
    assert result.blood_pool.any() and np.all(p.labels[result.blood_pool] == Region.LV_BLOOD)
    for window in result.windows:
        for name, image in window.maps.items():
            assert np.all(np.isfinite(image)), name
        assert window.aif.r_squared > 0.99
        assert window.maps["failed"][p.labels == Region.REMOTE].mean() < 0.05
    # breath-hold shifts are reported in mm
    assert result.shifts_mm.shape == (len(p.times_min), 2)


# ---- first-pass (densely sampled AIF) fits, as in the OSIPI DCE code collection ----------------------
# OSIPI DCE-DSC-MRI_CodeCollection test/DCEmodels/DCEmodels_data.py (see ../shared/reference-data/osipi/README.md):
# |measured - reference| <= atol + rtol * |reference|; fp in mL/100 mL/min, ps in /min, delay in s.
OSIPI_TOLERANCES = {"vp": (0.025, 0.0), "ve": (0.05, 0.0), "fp": (5.0, 0.1), "ps": (0.005, 0.1),
                    "delay": (1.0, 0.0)}  # atol, rtol


def _within(value, truth, name, factor=1.0):
    absolute, relative = OSIPI_TOLERANCES[name]
    return abs(value - truth) <= factor * (absolute + relative * abs(truth))


def _fit_first_pass(t_s, ct, cp):
    from analysis.ddce_fit import fit_tcxm
    from analysis.tcxm import SampledAif
    t_min = np.asarray(t_s, float) / 60.0
    fit = fit_tcxm(t_min, np.atleast_2d(ct), SampledAif(t_min, np.asarray(cp, float)), priors=None, iterations=200)
    # OSIPI units: fp in mL/100 mL/min, ps in /min
    return {"vp": fit.vp, "ve": fit.ve, "fp": fit.fp * 100.0, "ps": fit.ps}


def _fit_first_pass_with_delay(t_s, ct, cp, **kwargs):
    from analysis.first_pass import fit_first_pass
    fit = fit_first_pass(np.asarray(t_s, float) / 60.0, ct, cp, **kwargs)
    return {"vp": fit.vp, "ve": fit.ve, "fp": fit.fp * 100.0, "ps": fit.ps, "delay": fit.delay_s,
            "chi_square": fit.chi_square, "failed": fit.failed}


def test_sampled_aif_convolution_matches_ode():
    from analysis.tcxm import SampledAif
    t = np.arange(0, 300, 0.5) / 60.0
    aif = SampledAif(t, blood_aif_mM(t - 10 / 60) / 0.55)
    p = TRUE_PARAMETERS[Region.REMOTE]
    numerical = tissue_curve_numerical(t, p["ve"], p["vp"], p["fp"], p["ps"], aif, dt=0.0002)
    analytic = tissue_concentration(t, *(np.array([p[k]]) for k in ("fp", "ps", "vp", "ve")), aif)[0]
    np.testing.assert_allclose(analytic, numerical, atol=2e-3 * numerical.max())


@pytest.mark.parametrize("vp, ve, fp_per_100ml, ps", [(0.02, 0.1, 5, 0.05), (0.1, 0.2, 25, 0.15),
                                                      (0.02, 0.2, 40, 0.15), (0.1, 0.1, 25, 0.05)])
def test_first_pass_fit_recovers_parameters_within_osipi_tolerances(vp, ve, fp_per_100ml, ps):
    """Our own first-pass simulation (Parker AIF from 10 s, 0.5 s sampling, 300 s, no noise)."""
    from analysis.tcxm import SampledAif
    t_s = np.arange(0.25, 300, 0.5)
    t = t_s / 60.0
    cp = blood_aif_mM(t - 10 / 60) / 0.55
    ct = tissue_curve_numerical(t, ve, vp, fp_per_100ml / 100, ps, SampledAif(t, cp), dt=0.0002)
    fitted = _fit_first_pass(t_s, ct, cp)
    for name, truth in (("vp", vp), ("ve", ve), ("fp", fp_per_100ml), ("ps", ps)):
        assert _within(float(fitted[name][0]), truth, name), (name, float(fitted[name][0]), truth)


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "jittered"])
@pytest.mark.parametrize("rates", [3, 200], ids=["few", "recursion"])
def test_sampled_aif_convolution_matches_direct_integration(uniform, rates):
    """The ways SampledAif convolves (a cumulative sum for few rates, else the recursion) against the
    ODE the convolution solves, F' = Ca(t) - k F, F(0) = 0, integrated by scipy (rtol 1e-10): exact at the
    samples; between them F is interpolated linearly, within 1.5 % of its peak at 0.6-1.2 s sampling."""
    from scipy.integrate import solve_ivp

    from analysis.tcxm import SampledAif
    rng = np.random.default_rng(3)
    t = np.arange(0.25, 120, 0.5) / 60.0 if uniform else np.cumsum(rng.uniform(0.6, 1.2, 120)) / 60.0
    cp = blood_aif_mM(t - 10 / 60) / 0.55
    k = np.exp(rng.uniform(-5, 4.5, (rates, 1)))        # 0.007 to 90 /min
    for shift_min, tolerance in ((0.0, 1e-6), (3.7 / 60, 1.5e-2)):   # on the grid, and between samples
        ours = SampledAif(t, cp).convolve_exponential(t - shift_min, k)
        for row in (0, rates - 1):
            rate = float(k[row, 0])
            after = t - shift_min > 0
            ode = solve_ivp(lambda s, f: np.interp(s, t, cp, left=0.0) - rate * f, (0.0, t[-1]), [0.0],
                            t_eval=t[after] - shift_min, rtol=1e-10, atol=1e-12, max_step=0.004, method="DOP853")
            reference = np.zeros(t.size)
            reference[after] = ode.y[0]
            np.testing.assert_allclose(ours[row], reference, rtol=0, atol=tolerance * np.abs(reference).max())


# simulated first pass with a known arterial delay: (vp, ve, fp in mL/100 mL/min, ps in /min, delay in s)
DELAYED_CASES = [(0.1, 0.2, 40, 0.15, 0.0), (0.02, 0.1, 25, 0.05, 3.7), (0.1, 0.1, 25, 0.15, 8.0)]


def _delayed_curves(t_min, noise_mM=0.001, seed=1):
    """Tissue curves (ODE integration) seeing the Parker-like plasma AIF (from 10 s) delayed by each case's delay."""
    curves = [tissue_curve_numerical(t_min, ve, vp, fp / 100, ps,
                                     lambda tt, d=delay: blood_aif_mM(tt - (10 + d) / 60) / 0.55, dt=0.0002)
              for vp, ve, fp, ps, delay in DELAYED_CASES]
    return np.stack(curves) + np.random.default_rng(seed).normal(0.0, noise_mM, (len(curves), t_min.size))


@pytest.fixture(scope="module")
def delayed_first_pass():
    t_s = np.arange(0.25, 180, 0.5)          # 0.5 s sampling as the OSIPI reference data, 3 min instead of 5
    cp = blood_aif_mM(t_s / 60 - 10 / 60) / 0.55
    ct = _delayed_curves(t_s / 60)
    return t_s, ct, cp, _fit_first_pass_with_delay(t_s, ct, cp, sigma_mM=0.001)   # the control estimates sigma


@pytest.mark.parametrize("case", range(len(DELAYED_CASES)), ids=[f"delay_{c[-1]}s" for c in DELAYED_CASES])
def test_first_pass_fit_recovers_arterial_delay(delayed_first_pass, case):
    *_, fitted = delayed_first_pass
    assert not fitted["failed"][case]
    for name, truth in zip(("vp", "ve", "fp", "ps", "delay"), DELAYED_CASES[case]):
        assert _within(float(fitted[name][case]), truth, name), (name, float(fitted[name][case]), truth)


def test_a_fit_without_delay_is_wrong_on_delayed_data(delayed_first_pass):
    """The control: with the delay held at 0 the same curves are fitted badly, so the tests above need the delay."""
    t_s, ct, cp, with_delay = delayed_first_pass
    delayed = [i for i, case in enumerate(DELAYED_CASES) if case[-1] > 0]
    without = _fit_first_pass_with_delay(t_s, ct[delayed], cp, max_delay_s=0.0)
    assert np.all(without["delay"] == 0.0)
    for row, case in enumerate(delayed):
        wrong = [name for name, truth in zip(("vp", "ve", "fp", "ps"), DELAYED_CASES[case])
                 if not _within(float(without[name][row]), truth, name)]
        assert wrong, DELAYED_CASES[case]
        assert without["chi_square"][row] > 10 * with_delay["chi_square"][case]


@pytest.mark.integration     # slow (a few seconds): one batched fit per grid delay
def test_first_pass_fit_with_irregular_sampling():
    """ECG-triggered frames are not evenly spaced: each grid delay is then its own batched fit."""
    rng = np.random.default_rng(5)
    t_s = np.cumsum(rng.uniform(0.8, 1.2, 90))             # about one frame per second for 1.5 min
    cp = blood_aif_mM(t_s / 60 - 10 / 60) / 0.55
    ct = _delayed_curves(t_s / 60)[1]                       # delay 3.7 s
    fitted = _fit_first_pass_with_delay(t_s, ct, cp, max_delay_s=6.0)
    for name, truth in zip(("vp", "ve", "fp", "ps", "delay"), DELAYED_CASES[1]):
        assert _within(float(fitted[name][0]), truth, name), (name, float(fitted[name][0]), truth)


def test_first_pass_fit_rejects_bad_input():
    from analysis.first_pass import fit_first_pass
    t = np.arange(0.25, 60, 0.5) / 60
    with pytest.raises(ValueError):
        fit_first_pass(t, np.zeros((2, t.size - 1)), np.zeros(t.size))
    with pytest.raises(ValueError):
        fit_first_pass(t, np.zeros(t.size), np.zeros(t.size), max_delay_s=-1.0)


def _osipi_files():
    root = Path(__file__).resolve().parents[2] / "shared" / "reference-data"
    return sorted(root.glob("**/2cxm_sd_0.001_delay_*.csv")) if root.is_dir() else []


# OSIPI cases where the least-squares optimum itself lies outside the tolerance, and by how much it may:
# case_8_delayed (vp 0.02, fp 5 mL/100 mL/min, ps 0.15 /min): ps is correlated with the delay (d ps / d delay
# about -0.13 /min per s) and the noise (chi-square of the truth 13 above the optimum) puts the 5-parameter
# optimum at delay 5.07 s, ps 0.128 (scipy least_squares on the same model), outside 0.15 +- 0.02.
OSIPI_KNOWN_OUTSIDE = {("2cxm_sd_0.001_delay_5.csv", "case_8_delayed", "ps"): 1.5}


@pytest.mark.integration     # no external program, but a minute of fits over the whole reference set
@pytest.mark.skipif(not _osipi_files(), reason="OSIPI 2CXM reference data not present in ../shared/reference-data")
def test_osipi_2cxm_reference_data():
    """Both OSIPI 2CXM files (arterial delay 0 and 5 s), 48 curves, through the delay-fitting first-pass fit."""
    import csv
    checked, outside = 0, []
    for path in _osipi_files():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))

        def vector(row, key):
            return np.array(row[key].split(), dtype=float)
        t_s, cp = vector(rows[0], "t"), vector(rows[0], "cp_aif")
        assert all(np.array_equal(vector(r, "t"), t_s) and np.array_equal(vector(r, "cp_aif"), cp) for r in rows)
        fitted = _fit_first_pass_with_delay(t_s, np.stack([vector(r, "C_t") for r in rows]), cp)
        for i, row in enumerate(rows):
            checked += 1
            truth = {"vp": row["vp"], "ve": row["ve"], "fp": row["fp"], "ps": row["ps"], "delay": row["arterial_delay"]}
            for name, value in truth.items():
                factor = OSIPI_KNOWN_OUTSIDE.get((path.name, row["label"], name), 1.0)
                if not _within(float(fitted[name][i]), float(value), name, factor):
                    outside.append((path.name, row["label"], name, round(float(fitted[name][i]), 4), float(value)))
    assert checked >= 48, f"only {checked} OSIPI rows checked: both 2CXM files (delay 0 and 5 s) are expected"
    assert not outside, outside
