"""Regional 95 % intervals of the 2CXM (analysis/ddce_uncertainty.py): right where the data decide, open
(a bound, not identified) where they do not."""
import numpy as np
import pytest

from analysis.ddce_uncertainty import Estimate, _Problem, mean_lag_min, profile_region
from analysis.tcxm import BiexpAif, irf_exponentials

TIMES_30_MIN = np.array([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 23, 26, 30.0])
AIF = BiexpAif(a1=2.0, m1=1.2, a2=1.0, m2=0.05)


def _curves(ve, vp, fp, ps, bolus, times):
    """Tissue and plasma concentration from the joint model itself (x as in analysis/ddce_uncertainty.py)."""
    x = np.array([ve, vp, np.log(fp), np.log(ps), np.log(AIF.a1), np.log(AIF.m1 - AIF.m2), np.log(AIF.a2),
                  np.log(AIF.m2), np.log(bolus)])
    model = _Problem(times, np.zeros(times.size), np.ones(times.size), np.zeros(times.size),
                     np.ones(times.size)).residual(x)
    return model[:times.size], model[times.size:]


def test_mean_lag_is_the_first_moment_of_the_impulse_response():
    q = np.array([[0.25, 0.06, 0.7, 0.5]])          # ve, vp, Fp, PS (1/min)
    c1, a, c2, b = (float(v[0]) for v in irf_exponentials(q[:, 2], q[:, 3], q[:, 1], q[:, 0]))
    t = np.linspace(0, 200, 400001)
    h = c1 * np.exp(-a * t) + c2 * np.exp(-b * t)
    assert np.trapezoid(h, t) == pytest.approx(0.31, rel=1e-4)     # the area is ve + vp
    assert float(mean_lag_min(q)[0]) == pytest.approx(np.trapezoid(t * h, t) / np.trapezoid(h, t), rel=1e-4)


def test_thirty_minutes_bound_ve_plus_vp_on_both_sides_around_the_truth():
    ct, cp = _curves(0.25, 0.06, 0.7, 0.5, 1.5, TIMES_30_MIN)
    rng = np.random.default_rng(3)
    se_t, se_p = np.full(ct.size, 0.003), np.full(cp.size, 0.01)
    estimates = profile_region(TIMES_30_MIN, ct + se_t * rng.standard_normal(ct.size), se_t,
                               cp + se_p * rng.standard_normal(cp.size), se_p, AIF, names=("ve_plus_vp",))
    e = estimates["ve_plus_vp"]
    assert e.identified and e.ci95[0] < 0.31 < e.ci95[1] and e.ci95[1] - e.ci95[0] < 0.2


def test_fast_exchange_leaves_ps_a_lower_bound_only():
    """Infarct-like tissue (PS 5 /min): delayed samples cannot tell PS 5 from PS 20."""
    ct, cp = _curves(0.6, 0.05, 0.5, 5.0, 1.5, TIMES_30_MIN)
    se_t, se_p = np.full(ct.size, 0.003), np.full(cp.size, 0.01)
    e = profile_region(TIMES_30_MIN, ct, se_t, cp, se_p, AIF, names=("ps",))["ps"]
    assert not e.identified and e.value is None
    assert e.ci95[1] is None and e.ci95[0] is not None and e.ci95[0] < 5.0


def test_an_open_interval_is_reported_without_a_value():
    e = Estimate(value=None, ci95=(0.45, None), identified=False)
    assert e.as_dict(scale=1 / 1.05, decimals=3) == {"value": None, "ci95": [0.429, None], "identifiable": False}


def test_the_interval_has_the_width_the_curvature_of_chi_square_gives():
    """Where chi-square is nearly quadratic (ve + vp over 30 minutes), the profile interval is the Wald one,
    value +- 1.96 SE with SE from the inverse Fisher information: this pins the 95 % threshold (3.84)."""
    ct, cp = _curves(0.25, 0.06, 0.7, 0.5, 1.5, TIMES_30_MIN)
    se_t, se_p = np.full(ct.size, 0.003), np.full(cp.size, 0.01)
    problem = _Problem(TIMES_30_MIN, ct, se_t, cp, se_p)
    x = np.array([0.25, 0.06, np.log(0.7), np.log(0.5), np.log(AIF.a1), np.log(AIF.m1 - AIF.m2), np.log(AIF.a2),
                  np.log(AIF.m2), np.log(1.5)])   # noise-free data: the truth is the optimum
    jacobian = np.column_stack([(problem.residual(x + h) - problem.residual(x - h)) / 2e-6
                                for h in np.eye(x.size) * 1e-6])
    gradient = np.zeros(x.size)
    gradient[:2] = 1.0                            # d(ve + vp) / dx
    se = float(np.sqrt(gradient @ np.linalg.pinv(jacobian.T @ jacobian) @ gradient))
    e = profile_region(TIMES_30_MIN, ct, se_t, cp, se_p, AIF, names=("ve_plus_vp",))["ve_plus_vp"]
    assert e.ci95[1] - e.ci95[0] == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_what_the_report_says_for_identified_and_bounded_parameters():
    from dicom_out import codes
    from node.process.modules.ddce_regions import bound_text, report_items, results_entry
    one_slice = [{"ve_plus_vp": Estimate(0.30, (0.28, 0.33), True), "ps": Estimate(None, (0.42, None), False),
                  "fp": Estimate(None, (None, None), False)}]
    measures, evaluations = report_items(one_slice)
    by_code = {m.name.value: m for m in measures}
    assert by_code["VEVP"].value == 0.3 and by_code["VEVP"].interval == (0.28, 0.33)
    assert "LCL95-VEVP" not in by_code and "UCL95-VEVP" not in by_code   # a value with its interval, no limits
    assert "PS" not in by_code and by_code["LCL95-PS"].value == pytest.approx(0.42 / 1.05, abs=1e-4)
    assert not any(code.startswith(("FP", "LCL95-FP", "UCL95-FP")) for code in by_code)   # nothing known
    said = {e.name.value: e.value for e in evaluations}
    assert said["ID-VEVP"] == codes.YES and said["ID-PS"] == codes.NO and said["ID-FP"] == codes.NO
    assert bound_text("ps", one_slice[0]["ps"]) == "PS >= 0.4 mL/min/g"
    entry = results_entry(one_slice[0], 12.0)
    assert entry["ps_ml_per_min_per_g"] == {"value": None, "ci95": [0.4, None], "identifiable": False,
                                            "bound": "PS >= 0.4 mL/min/g"}
    # two slices: evaluations only (Yes only where every slice identifies it), the intervals stay per slice
    measures, evaluations = report_items(one_slice + [{"ve_plus_vp": Estimate(None, (0.1, None), False)}])
    assert measures == [] and {e.name.value: e.value for e in evaluations}["ID-VEVP"] == codes.NO


def test_the_scalar_model_of_the_interval_fit_is_the_batched_2cxm():
    """_Problem.residual recomputes the 2CXM and the bi-exponential convolution on scalars for speed: it must
    give what analysis/tcxm.py gives (with the first-pass bolus, the impulse response times its area)."""
    from analysis.tcxm import tissue_concentration
    ve, vp, fp, ps, bolus = 0.25, 0.06, 0.7, 0.5, 1.5
    tissue, plasma = _curves(ve, vp, fp, ps, bolus, TIMES_30_MIN)
    c1, a, c2, b = (float(v[0]) for v in irf_exponentials(np.array([fp]), np.array([ps]), np.array([vp]),
                                                          np.array([ve])))
    lag = np.maximum(TIMES_30_MIN - 0.2, 0.0)
    expected = tissue_concentration(TIMES_30_MIN, np.array([fp]), np.array([ps]), np.array([vp]), np.array([ve]),
                                    AIF)[0] + bolus * (c1 * np.exp(-a * lag) + c2 * np.exp(-b * lag))
    np.testing.assert_allclose(tissue, expected, rtol=1e-9)
    np.testing.assert_allclose(plasma, AIF(TIMES_30_MIN), rtol=1e-12)


def _noisy_voxels(parameters, times, n, sd, seed):
    """n noisy voxels of one tissue, from the phantom's own explicit integration (not the fitter's convolution),
    and the plasma AIF fitted to the plasma samples as analysis/ddce.py fits it."""
    from analysis.phantoms.ddce import blood_aif_mM, tissue_curve_numerical
    from analysis.tcxm import fit_biexp_aif

    def plasma(t):
        return blood_aif_mM(t) / 0.58
    curve = tissue_curve_numerical(times, parameters["ve"], parameters["vp"], parameters["fp"], parameters["ps"],
                                   plasma, dt=0.002)
    noise = sd * np.random.default_rng(seed).standard_normal((n, times.size))
    return curve + noise, np.full((n, times.size), sd), fit_biexp_aif(times, plasma(times))


def test_per_voxel_identification_matches_what_the_data_can_say():
    """Remote myocardium over 30 min (ve + vp decided, fast exchange not) and an infarct over 5 min (its large
    ve decided from the first maps): a 95 % test decides 'identified' where the interval is closed."""
    from analysis.ddce_identification import identified_voxels
    remote = dict(ve=0.13, vp=0.06, fp=0.63, ps=0.44)
    ct, sd, aif = _noisy_voxels(remote, TIMES_30_MIN, 120, 0.01, seed=5)
    found = identified_voxels(TIMES_30_MIN, ct, sd, aif)
    assert found["ve_plus_vp"].mean() >= 0.9
    assert found["ps"].mean() <= 0.1 and found["fp"].mean() <= 0.1
    infarct = dict(ve=0.61, vp=0.05, fp=0.53, ps=5.33)
    five = TIMES_30_MIN[TIMES_30_MIN <= 5]
    ct, sd, aif = _noisy_voxels(infarct, five, 120, 0.01, seed=6)
    found = identified_voxels(five, ct, sd, aif)
    assert found["ve"].mean() >= 0.9 and found["ps"].mean() <= 0.1


def test_a_voxel_without_signal_identifies_nothing():
    """Pure noise around zero: every parameter is as good at its limits as anywhere."""
    from analysis.ddce_identification import MAP_PARAMETERS, identified_voxels
    rng = np.random.default_rng(2)
    found = identified_voxels(TIMES_30_MIN, 0.01 * rng.standard_normal((40, TIMES_30_MIN.size)),
                              np.full((40, TIMES_30_MIN.size), 0.01), AIF)
    for name in MAP_PARAMETERS:
        assert found[name].mean() <= 0.1, name


def test_the_unsampled_first_pass_leaves_five_minute_remote_ve_plus_vp_open():
    """Remote myocardium's first 5 minutes, at the noise of one voxel of a 3 % T1 map: the regional interval
    (AIF free) is open above; so must the voxel test be in most voxels, which it is only when the AIF's area
    before the first map may also be smaller than the bi-exponential's extrapolation."""
    from analysis.ddce_identification import identified_voxels
    remote = dict(ve=0.13, vp=0.06, fp=0.63, ps=0.44)
    five = TIMES_30_MIN[TIMES_30_MIN <= 5]
    ct, sd, aif = _noisy_voxels(remote, five, 120, 0.015, seed=8)
    assert identified_voxels(five, ct, sd, aif, names=("ve_plus_vp",))["ve_plus_vp"].mean() <= 0.3
